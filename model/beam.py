"""Beam search: keep the k best partial translations instead of one.

Each step extends every live hypothesis by every token, scores each candidate by the sum of
its log-probabilities, and keeps the best k per sentence; a hypothesis that ends in </s>
is set aside, ranked by log p(Y | X) / lp(Y) with GNMT's length penalty. Sentences are
decoded in batches, each sentence taking k rows of the key/value cache, which is
reordered as beams are picked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tt.model.decode import DecodeConfig, Hypothesis, encode_sources, in_length_order, max_output_length, never_chosen
from tt.model.device import autocast, model_device
from tt.model.transformer import Transformer


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6)^α: dividing by it keeps long outputs from losing to short ones."""
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class BeamConfig:
    beam: int = 5
    alpha: float = 0.6  # length penalty; 0 ranks by raw log-probability
    n_best: int = 1


@torch.no_grad()
def beam_decode(
    model: Transformer, src_ids: list[list[int]], beam: BeamConfig, config: DecodeConfig | None = None
) -> list[list[tuple[float, Hypothesis]]]:
    """For each source, its `n_best` hypotheses as (score, hypothesis), best first.

    score = log p(Y | X) / lp(Y). Sentences are decoded in batches, each sentence keeping
    `beam.beam` rows in the key/value cache; the cache is reordered as beams are picked.
    """
    config = config or DecodeConfig()
    model.eval()

    def decode_chunk(chunk: list[int]) -> list[list[tuple[float, Hypothesis]]]:
        with autocast(model_device(model), config.precision):
            return _beam_batch(model, [src_ids[i] for i in chunk], beam, config)

    per_batch = max(1, config.batch_size // beam.beam)  # each sentence takes `beam` rows
    return in_length_order(len(src_ids), lambda i: len(src_ids[i]), per_batch, decode_chunk)


def _beam_batch(model, src_rows, beam: BeamConfig, config):
    n, k = len(src_rows), beam.beam
    device = model_device(model)
    ids = model.config
    cache = encode_sources(model, src_rows)
    cache.select(torch.arange(n, device=device).repeat_interleave(k))  # row s*k + j is beam j of sentence s
    limits = [max_output_length(len(row), config, model) for row in src_rows]
    scores = torch.full((n, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand
    tokens = torch.full((n * k, 1), ids.start_id, dtype=torch.long, device=device)
    banned = never_chosen(model)
    token_log_probs = torch.zeros((n * k, 0), device=device)
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(n)]
    done = [False] * n
    for step in range(max(limits)):
        log_probs = model.log_probs(model.decode_step(tokens[:, -1:], cache)[:, -1])
        vocab = log_probs.shape[-1]
        allowed = log_probs.index_fill(1, banned, float("-inf"))
        candidates = (scores.view(n, k, 1) + allowed.view(n, k, vocab)).view(n, k * vocab)
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # 2k: up to k may end here
        top_scores, top_index = top_scores.cpu(), top_index.cpu()  # read one by one below
        next_rows, next_tokens, next_scores = [], [], []
        for s in range(n):
            picked = []
            for rank in range(2 * k):
                score = float(top_scores[s, rank])
                if score == float("-inf"):
                    break
                beam_index, token = divmod(int(top_index[s, rank]), vocab)
                row = s * k + beam_index
                ends = token == ids.eos_id or step + 1 >= limits[s]
                if ends and not done[s]:
                    if rank < k:  # only an ending that would have made the beam counts
                        history = token_log_probs[row].tolist() + [float(log_probs[row, token])]
                        hyp = Hypothesis(tokens[row, 1:].tolist() + [token], history)
                        finished[s].append((score / length_penalty(len(hyp.tokens), beam.alpha), hyp))
                    continue
                if token == ids.eos_id:
                    continue
                picked.append((row, token, score))
                if len(picked) == k:
                    break
            if len(finished[s]) >= max(k, beam.n_best) or step + 1 >= limits[s]:
                done[s] = True
            while len(picked) < k:  # a finished sentence (or too few live beams) keeps dummies
                picked.append((s * k, ids.pad_id, float("-inf")))
            if done[s]:
                picked = [(s * k, ids.pad_id, float("-inf"))] * k
            for row, token, score in picked:
                next_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
        if all(done):
            break
        rows = torch.tensor(next_rows, device=device)
        chosen = torch.tensor(next_tokens, device=device)
        chosen_log_probs = log_probs[rows, chosen]
        cache.select(rows)
        tokens = torch.cat([tokens[rows], chosen[:, None]], dim=1)
        token_log_probs = torch.cat([token_log_probs[rows], chosen_log_probs[:, None]], dim=1)
        scores = torch.tensor(next_scores, device=device).view(n, k)
    results = []
    for s in range(n):
        ranked = sorted(finished[s], key=lambda item: item[0], reverse=True)
        results.append(ranked[: beam.n_best])
    return results
