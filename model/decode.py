"""From source ids to target ids: greedy decoding with a key/value cache.

Greedy: at each step take the most probable next token, argmax p(y_t | y_<t, x), feed it
back, stop at </s> or at the length limit. Sentences are decoded in batches, sorted by
length so that a batch holds similar sentences; a sentence that has finished leaves the
batch so the rest run faster.

With the cache each step runs only the newest token through the decoder: earlier
positions' keys and values are kept (`tt.model.attention.KVCache`). `use_cache=False`
recomputes the whole prefix each step; a test checks that both give the same numbers.

Inspection (`keep_distributions=True`) keeps each step's full distribution, the
cross-attention and each decoder layer's output (for the logit lens), in float32.

Forced decoding (`tt score`) feeds a given target instead of the model's choices: one
teacher-forced pass gives p(y_t | y_<t, x) for every reference token at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from tt.data.batches import make_batch, pad
from tt.model.device import autocast, model_device
from tt.model.recording import Seen, recording
from tt.model.transformer import Transformer


@dataclass
class DecodeConfig:
    max_len_ratio: float = 2.0  # output pieces allowed per source piece …
    max_len_extra: int = 10  # … plus this many
    batch_size: int = 64  # sentences decoded together
    precision: str = "fp32"  # fp32: the same text for any batch size, probabilities to ~1e-6; bf16: faster
    fixed_length: int | None = None  # benchmarks: exactly this many tokens, </s> never chosen
    device: str = "auto"  # where a Translator puts the model: auto (CUDA when present) | cpu | cuda


@dataclass
class Step:
    """What inspection keeps of one decoding step."""

    log_probs: torch.Tensor  # (tgt_vocab,) float32: the whole distribution
    attention: torch.Tensor | None = None  # (n_layers, n_heads, src_len): cross-attention weights
    layer_log_probs: list[torch.Tensor] | None = None  # logit lens: one (tgt_vocab,) per decoder layer


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, the final EOS included when the sentence finished
    token_log_probs: list[float]  # ln p of each chosen token
    steps: list[Step] = field(default_factory=list)  # filled only under inspection

    @property
    def log_prob(self) -> float:
        return float(sum(self.token_log_probs))


def never_chosen(model: Transformer, also: tuple[int, ...] = ()) -> torch.Tensor:
    """Ids decoding never picks: padding and the start token are not words (Marian's
    `bad_words_ids` says the same). Their probabilities stay in every distribution shown."""
    ids = sorted({model.config.pad_id, model.config.start_id, *also})
    return torch.tensor(ids, device=model_device(model))


def max_output_length(src_len: int, config: DecodeConfig, model: Transformer) -> int:
    limit = int(src_len * config.max_len_ratio) + config.max_len_extra
    return max(1, min(limit, model.config.max_positions - 1))


@torch.no_grad()
def greedy_decode(
    model: Transformer,
    src_ids: list[list[int]],
    config: DecodeConfig | None = None,
    keep_distributions: bool = False,
    attention: bool = False,
    lens: bool = False,
    use_cache: bool = True,
    prefixes: list[list[int]] | None = None,
    sampler: Callable[[torch.Tensor], torch.Tensor] | None = None,  # e.g. tt.model.sampling.Sampler
) -> list[Hypothesis]:
    """One hypothesis per source, in the order given. `prefixes` force the first tokens."""
    config = config or DecodeConfig()
    model.eval()
    keep = keep_distributions or attention or lens

    def decode_chunk(chunk: list[int]) -> list[Hypothesis]:
        rows = [src_ids[i] for i in chunk]
        chunk_prefixes = [prefixes[i] for i in chunk] if prefixes else None
        with autocast(model_device(model), config.precision), recording(model, attention=attention, layers=lens) as seen:
            return _greedy_batch(model, rows, config, keep, seen, use_cache, chunk_prefixes, sampler)

    return in_length_order(len(src_ids), lambda i: len(src_ids[i]), config.batch_size, decode_chunk)


def in_length_order(count: int, length: Callable[[int], object], batch_size: int, decode_chunk: Callable[[list[int]], list]) -> list:
    """Decode items 0 … count-1 in batches of similar length (less padding); results in the original order."""
    order = sorted(range(count), key=length)
    results: list = [None] * count
    for start in range(0, count, batch_size):
        chunk = order[start : start + batch_size]
        for index, result in zip(chunk, decode_chunk(chunk)):
            results[index] = result
    return results


def _greedy_batch(model, src_rows, config, keep, seen: Seen, use_cache, prefixes, sampler=None):
    batch = len(src_rows)
    device = model_device(model)
    ids = model.config
    src = pad(src_rows, pad_id=ids.pad_id).to(device)
    src_pad_mask = src == ids.pad_id
    memory = model.encode(src, src_pad_mask)
    cache = model.new_cache(memory, src_pad_mask)
    limits = [config.fixed_length or max_output_length(len(row), config, model) for row in src_rows]
    hyps = [Hypothesis([], []) for _ in range(batch)]
    active = torch.arange(batch)  # original row of each row still decoding (kept on the CPU)
    tokens = torch.full((batch, 1), ids.start_id, dtype=torch.long, device=device)  # everything fed so far
    banned = never_chosen(model, (ids.eos_id,) if config.fixed_length else ())  # fixed length: </s> too
    step = 0
    while len(active) > 0:
        seen.clear()  # inspection keeps what this step's pass records
        if use_cache:
            log_probs = model.log_probs(model.decode_step(tokens[:, -1:], cache)[:, -1])  # (active, tgt_vocab)
        else:
            # No cache at all: the plain forward pass over the whole prefix, every step (the
            # encoder output's keys and values and every position's distribution included),
            # as a decoder without a cache computes it; only the last position is used.
            log_probs = model.log_probs(model.decode(tokens, cache.memory, cache.allowed))[:, -1]
        allowed = log_probs.index_fill(1, banned, float("-inf"))
        chosen = allowed.argmax(dim=-1) if sampler is None else sampler(allowed)
        if prefixes:
            for row, original in enumerate(active.tolist()):
                if step < len(prefixes[original]):
                    chosen[row] = prefixes[original][step]
        chosen_log_probs = log_probs.gather(1, chosen[:, None]).squeeze(1).tolist()
        still = []
        for row, (original, token) in enumerate(zip(active.tolist(), chosen.tolist())):
            hyp = hyps[original]
            hyp.tokens.append(token)
            hyp.token_log_probs.append(chosen_log_probs[row])
            if keep:
                hyp.steps.append(_inspect_step(model, log_probs[row], row, seen))
            if token != ids.eos_id and len(hyp.tokens) < limits[original]:
                still.append(row)
        step += 1
        if len(still) < len(active):  # drop finished sentences from the batch and the cache
            keep_rows = torch.tensor(still, dtype=torch.long, device=device)
            active = active[keep_rows.cpu()]
            cache.select(keep_rows)
            tokens = tokens[keep_rows]
            chosen = chosen[keep_rows]
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
    return hyps


def _inspect_step(model, log_probs, row, seen: Seen) -> Step:
    step = Step(log_probs=log_probs.float().cpu().clone())
    if seen.attention:
        # each: (batch, n_heads, new_len, src_len) → this row, the newest position
        step.attention = torch.stack([w[row, :, -1].float() for w in seen.attention]).cpu()
    if seen.layers:
        step.layer_log_probs = [model.log_probs(h[row, -1]).float().cpu() for h in seen.layers]
    return step


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
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    results: list = [None] * len(src_ids)
    per_batch = max(1, config.batch_size // beam.beam)
    for start in range(0, len(order), per_batch):
        chunk = order[start : start + per_batch]
        with autocast(model_device(model), config.precision):
            outputs = _beam_batch(model, [src_ids[i] for i in chunk], beam, config)
        for index, output in zip(chunk, outputs):
            results[index] = output
    return results


def _beam_batch(model, src_rows, beam: BeamConfig, config):
    n, k = len(src_rows), beam.beam
    device = model_device(model)
    ids = model.config
    src = pad(src_rows, pad_id=ids.pad_id).to(device)
    src_pad_mask = src == ids.pad_id
    memory = model.encode(src, src_pad_mask)
    cache = model.new_cache(memory, src_pad_mask)
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


@dataclass
class ForcedResult:
    """The model's view of one given target, token by token."""

    tokens: list[int]  # the forced target ids, as given (normally ending in </s>)
    token_log_probs: list[float]  # ln p(y_t | y_<t, x) of each forced token
    ranks: list[int]  # place of the forced token in the distribution: 1 = the argmax
    argmax: list[int]  # what greedy decoding would have picked at that position
    argmax_log_probs: list[float] = field(default_factory=list)  # ln p of that argmax: the model's confidence

    @property
    def cross_entropy(self) -> float:
        """Mean −ln p over the tokens, in nats; perplexity is its exp."""
        return -sum(self.token_log_probs) / max(len(self.tokens), 1)


@torch.no_grad()
def force_decode(
    model: Transformer, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_size: int = 64
) -> list[ForcedResult]:
    """One result per (source, target) pair, in the order given; float32, one forward pass per batch."""
    assert len(src_ids) == len(tgt_ids), "one target per source"
    model.eval()
    def decode_chunk(chunk: list[int]) -> list[ForcedResult]:
        rows = [src_ids[i] for i in chunk], [tgt_ids[i] for i in chunk]
        batch = make_batch(*rows, start_id=model.config.start_id, pad_id=model.config.pad_id).to(model_device(model))
        log_probs = model(batch.src, batch.src_pad_mask, batch.tgt_in).float()  # (batch, tgt_len, tgt_vocab)
        target = batch.tgt_out[..., None]
        chosen = log_probs.gather(-1, target)  # (batch, tgt_len, 1)
        # Ties broken by id, as argmax breaks them (first index): rank 1 exactly when token == argmax.
        ids = torch.arange(log_probs.shape[-1], device=log_probs.device)
        ahead = (log_probs > chosen) | ((log_probs == chosen) & (ids < target))
        ranks = ahead.sum(-1) + 1
        top_log_probs, argmax = log_probs.max(-1)
        results = []
        for row, index in enumerate(chunk):
            n = len(tgt_ids[index])
            results.append(ForcedResult(
                tokens=list(tgt_ids[index]),
                token_log_probs=chosen[row, :n, 0].tolist(),
                ranks=ranks[row, :n].tolist(),
                argmax=argmax[row, :n].tolist(),
                argmax_log_probs=top_log_probs[row, :n].tolist(),
            ))
        return results

    return in_length_order(len(src_ids), lambda i: (len(tgt_ids[i]), len(src_ids[i])), batch_size, decode_chunk)
