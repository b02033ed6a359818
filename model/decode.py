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
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from tt.data.batches import pad
from tt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tt.model.transformer import Transformer


@dataclass
class DecodeConfig:
    max_len_ratio: float = 2.0  # output pieces allowed per source piece …
    max_len_extra: int = 10  # … plus this many
    batch_size: int = 64  # sentences decoded together
    precision: str = "fp32"  # fp32: exact, batch-independent numbers; bf16: faster


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


def max_output_length(src_len: int, config: DecodeConfig, model: Transformer) -> int:
    limit = int(src_len * config.max_len_ratio) + config.max_len_extra
    return max(1, min(limit, model.config.max_positions - 1))


def autocast_for(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


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
) -> list[Hypothesis]:
    """One hypothesis per source, in the order given. `prefixes` force the first tokens."""
    config = config or DecodeConfig()
    model.eval()
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    results: list[Hypothesis | None] = [None] * len(src_ids)
    for start in range(0, len(order), config.batch_size):
        chunk = order[start : start + config.batch_size]
        with autocast_for(config.precision):
            hyps = _greedy_batch(
                model,
                [src_ids[i] for i in chunk],
                config,
                keep_distributions or attention or lens,
                attention,
                lens,
                use_cache,
                [prefixes[i] for i in chunk] if prefixes else None,
            )
        for index, hyp in zip(chunk, hyps):
            results[index] = hyp
    return results  # type: ignore[return-value]


def _greedy_batch(model, src_rows, config, keep, attention, lens, use_cache, prefixes):
    batch = len(src_rows)
    src = pad(src_rows)
    src_pad_mask = src == PAD_ID
    memory = model.encode(src, src_pad_mask)
    cache = model.new_cache(memory, src_pad_mask)
    limits = [max_output_length(len(row), config, model) for row in src_rows]
    hyps = [Hypothesis([], []) for _ in range(batch)]
    active = torch.arange(batch)  # original row of each row still decoding
    tokens = torch.full((batch, 1), BOS_ID, dtype=torch.long)  # everything fed so far
    step = 0
    while len(active) > 0:
        layers_out: list | None = [] if lens else None
        weights: list | None = [] if attention else None
        fed = tokens[:, -1:] if use_cache else tokens
        hidden = model.decode(
            fed, cache.cross, cache.allowed, cache if use_cache else None, layers_out, attention=weights
        )
        log_probs = model.log_probs(hidden[:, -1])  # (active, tgt_vocab)
        chosen = log_probs.argmax(dim=-1)
        if prefixes:
            for row, original in enumerate(active.tolist()):
                if step < len(prefixes[original]):
                    chosen[row] = prefixes[original][step]
        chosen_log_probs = log_probs.gather(1, chosen[:, None]).squeeze(1)
        still = []
        for row, original in enumerate(active.tolist()):
            hyp = hyps[original]
            token = int(chosen[row])
            hyp.tokens.append(token)
            hyp.token_log_probs.append(float(chosen_log_probs[row]))
            if keep:
                hyp.steps.append(_inspect_step(model, log_probs[row], row, weights, layers_out))
            if token != EOS_ID and len(hyp.tokens) < limits[original]:
                still.append(row)
        step += 1
        if len(still) < len(active):  # drop finished sentences from the batch and the cache
            keep_rows = torch.tensor(still, dtype=torch.long)
            active = active[keep_rows]
            cache.select(keep_rows)
            tokens = tokens[keep_rows]
            chosen = chosen[keep_rows]
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
    return hyps


def _inspect_step(model, log_probs, row, weights, layers_out) -> Step:
    step = Step(log_probs=log_probs.float().clone())
    if weights:
        # each: (batch, n_heads, new_len, src_len) → this row, the newest position
        step.attention = torch.stack([w[row, :, -1].float() for w in weights])
    if layers_out:
        step.layer_log_probs = [model.log_probs(h[row, -1]).float() for h in layers_out]
    return step
