"""The loss: cross-entropy against a label-smoothed target, written as a KL divergence.

For one target position with vocabulary size V, true token y and smoothing ε, the model's
distribution is p = softmax(logits) and the target distribution is

    q(v) = (1 − ε)·[v = y] + ε / V          (a one-hot, with ε of its mass spread evenly)

    cross-entropy   H(q, p) = −Σ_v q(v) ln p(v)
    entropy         H(q)    = −Σ_v q(v) ln q(v)        (0 when ε = 0: a one-hot is certain)
    KL divergence   KL(q‖p) = H(q, p) − H(q)

KL is what training minimizes: it is 0 exactly when p = q. H(q) does not depend on the
model, so minimizing KL and minimizing H(q, p) move the weights the same way; with ε = 0
all three reduce to the familiar −ln p(y). Padding positions count for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class LossParts:
    """Sums over the real (non-padding) target tokens of a batch, in nats."""

    kl: torch.Tensor  # Σ KL(q‖p): what backward() is called on (divided by n_tokens)
    cross_entropy: torch.Tensor  # Σ H(q, p)
    entropy: torch.Tensor  # Σ H(q): the floor label smoothing sets
    nll: torch.Tensor  # Σ −ln p(y): the plain cross-entropy on the reference
    n_tokens: int

    def __add__(self, other: LossParts) -> LossParts:
        return LossParts(
            self.kl + other.kl, self.cross_entropy + other.cross_entropy, self.entropy + other.entropy,
            self.nll + other.nll, self.n_tokens + other.n_tokens,
        )


def smoothed_targets(target: torch.Tensor, vocab_size: int, smoothing: float) -> torch.Tensor:
    """q as a dense (…, V) tensor: (1 − ε) on the true token plus ε/V everywhere."""
    one_hot = torch.nn.functional.one_hot(target, vocab_size).float()
    return (1.0 - smoothing) * one_hot + smoothing / vocab_size


def label_smoothed_loss(log_probs: torch.Tensor, target: torch.Tensor, smoothing: float, pad_id: int) -> LossParts:
    """log_probs: (…, V) from the output head; target: (…) token ids."""
    vocab_size = log_probs.shape[-1]
    real = target != pad_id  # training passes only real tokens; other callers' padding counts for nothing
    log_p_target = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # ln p(y)

    # H(q, p) = −Σ_v q(v) ln p(v). With q = (1−ε)·onehot(y) + ε/V the sum splits into
    # −(1−ε) ln p(y) − (ε/V) Σ_v ln p(v): the same number as −(q * log_p).sum(-1), without
    # building q, a (tokens × V) tensor, for every batch.
    cross_entropy = -(1.0 - smoothing) * log_p_target - (smoothing / vocab_size) * log_probs.sum(-1)
    entropy = smoothed_target_entropy(vocab_size, smoothing)  # H(q), the same for every token
    kl = cross_entropy - entropy  # KL(q‖p) = H(q, p) − H(q)

    n_tokens = int(real.sum())
    return LossParts(
        kl=kl.masked_fill(~real, 0.0).sum(),
        cross_entropy=cross_entropy.masked_fill(~real, 0.0).sum(),
        entropy=torch.tensor(entropy * n_tokens),
        nll=-log_p_target.masked_fill(~real, 0.0).sum(),
        n_tokens=n_tokens,
    )


def smoothed_target_entropy(vocab_size: int, smoothing: float) -> float:
    """H(q) = −Σ_v q(v) ln q(v), with 0·ln 0 = 0, for the q of `smoothed_targets`."""
    q = smoothed_targets(torch.zeros((), dtype=torch.long), vocab_size, smoothing)
    return float(-torch.xlogy(q, q).sum())


def dense_loss(log_probs: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The definitions, term by term, for one or more positions: (H(q, p), H(q), KL(q‖p)).

    `tt explain` shows these numbers; the tests check `label_smoothed_loss` against them.
    """
    cross_entropy = -(q * log_probs).sum(-1)  # H(q, p)
    entropy = -torch.xlogy(q, q).sum(-1)  # H(q), with 0·log 0 = 0
    kl = cross_entropy - entropy  # KL(q ‖ p); equals CE when q is one-hot
    return cross_entropy, entropy, kl


def loss_in_chunks(
    head: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, target: torch.Tensor, smoothing: float, pad_id: int,
    rows: int = 1024,
) -> LossParts:
    """`label_smoothed_loss(head(hidden), target, …)`, `rows` target positions at a time.

    The same sums, but the (positions × V) logits, log-probabilities and their gradients
    exist one chunk at a time: at an 8,000-word vocabulary a whole batch's are over 100 MB
    each, the output layer is the model's largest matrix product, and chunks that stay in
    the CPU's cache ran the output layer and loss (forward and backward) 1.5× faster.
    hidden: (positions, d_model); target: (positions,).
    """
    parts = [
        label_smoothed_loss(head(h), y, smoothing, pad_id) for h, y in zip(hidden.split(rows), target.split(rows))
    ]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


class TeacherForcedLoss(torch.nn.Module):
    """The model and its loss as one module: the forward pass of a training step.

    Only the real (non-padding) target positions reach the output layer, in chunks
    (`loss_in_chunks`). Under torchrun, DistributedDataParallel wraps this module, so the
    whole graph, output layer included, runs inside its forward.
    """

    def __init__(self, model: torch.nn.Module, smoothing: float, pad_id: int):
        super().__init__()
        self.model, self.smoothing, self.pad_id = model, smoothing, pad_id

    def forward(self, src: torch.Tensor, src_pad_mask: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> LossParts:
        real = tgt_out != self.pad_id
        hidden = self.model.decoder_states(src, src_pad_mask, tgt_in)[real]  # (real positions, d_model)
        return loss_in_chunks(self.model.log_probs, hidden, tgt_out[real], self.smoothing, self.pad_id)
