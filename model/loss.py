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

import torch


@dataclass
class LossParts:
    """Sums over the real (non-padding) target tokens of a batch, in nats."""

    kl: torch.Tensor  # Σ KL(q‖p): what backward() is called on (divided by n_tokens)
    cross_entropy: torch.Tensor  # Σ H(q, p)
    entropy: torch.Tensor  # Σ H(q): the floor label smoothing sets
    nll: torch.Tensor  # Σ −ln p(y): the plain cross-entropy on the reference
    n_tokens: int


def smoothed_targets(target: torch.Tensor, vocab_size: int, smoothing: float) -> torch.Tensor:
    """q as a dense (…, V) tensor: (1 − ε) on the true token plus ε/V everywhere."""
    one_hot = torch.nn.functional.one_hot(target, vocab_size).float()
    return (1.0 - smoothing) * one_hot + smoothing / vocab_size


def label_smoothed_loss(log_probs: torch.Tensor, target: torch.Tensor, smoothing: float, pad_id: int) -> LossParts:
    """log_probs: (…, V) from the output head; target: (…) token ids."""
    vocab_size = log_probs.shape[-1]
    real = target != pad_id  # padding positions are computed, then zeroed (cheaper than selecting)
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
