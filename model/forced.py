"""Forced decoding (`tt score`): feed a given target instead of the model's choices.

One teacher-forced pass gives p(y_t | y_<t, x) for every reference token at once, the
same pass training makes, so a score is exactly what the loss saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tt.data.batches import make_batch
from tt.model.decode import in_length_order
from tt.model.device import model_device
from tt.model.transformer import Transformer


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
