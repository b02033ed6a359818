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

Beam search is in `tt.model.beam`, forced decoding (`tt score`) in `tt.model.forced`; both
use the batching and encoding helpers here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from tt.data.batches import pad
from tt.model.attention import KVCache
from tt.model.decode_config import DecodeConfig, output_limit
from tt.model.device import autocast, model_device
from tt.model.recording import Seen, recording
from tt.model.transformer import Transformer


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
    return output_limit(src_len, config, model.config.max_positions)


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


def encode_sources(model: Transformer, src_rows: list[list[int]]) -> KVCache:
    """Run the encoder once over a padded batch of sources: the cache decoding starts from."""
    src = pad(src_rows, pad_id=model.config.pad_id).to(model_device(model))
    src_pad_mask = src == model.config.pad_id
    return model.new_cache(model.encode(src, src_pad_mask), src_pad_mask)


def _greedy_batch(model, src_rows, config, keep, seen: Seen, use_cache, prefixes, sampler=None):
    batch = len(src_rows)
    device = model_device(model)
    ids = model.config
    cache = encode_sources(model, src_rows)
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
