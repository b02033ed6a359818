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


class SmoothedKL(torch.autograd.Function):
    """`label_smoothed_loss(log_softmax(logits), …)` with its gradient written out.

    With p = softmax(z) and a target distribution q that sums to 1, the gradient of
    H(q, p) = −Σ_v q(v) ln p(v) with respect to the logits z is simply

        ∂H(q, p) / ∂z = p − q

    and KL(q‖p) = H(q, p) − H(q) has the same gradient (H(q) does not depend on z); the
    plain −ln p(y) is the case q = onehot(y). Autograd reaches the same numbers through the
    gather, the sum over the vocabulary and the log-softmax's own backward, each of which
    writes a (positions × V) tensor; here the backward pass is three passes over one tensor
    (p = exp(ln p) in place, scale, subtract q), the last writing the logits' dtype. With an
    8,000-word vocabulary the output layer's loss took a third of a bfloat16 training step
    before this (2 cores, AMX).

    Forward returns the three sums (Σ KL, Σ H(q, p), Σ −ln p(y)) over real positions.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float, pad_id: int):
        log_probs = logits.log_softmax(-1, dtype=torch.promote_types(logits.dtype, torch.float32))  # bfloat16 → float32
        parts = label_smoothed_loss(log_probs, target, smoothing, pad_id)
        ctx.save_for_backward(log_probs, target)
        ctx.smoothing, ctx.pad_id, ctx.logits_dtype = smoothing, pad_id, logits.dtype
        return parts.kl, parts.cross_entropy, parts.nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_kl: torch.Tensor, grad_cross_entropy: torch.Tensor, grad_nll: torch.Tensor):
        log_probs, target = ctx.saved_tensors
        vocab_size, smoothing = log_probs.shape[-1], ctx.smoothing
        toward_q = grad_kl + grad_cross_entropy  # both have the gradient p − q
        # Σ weights × (p − q), with q = (1 − ε)·onehot(y) + ε/V and onehot(y) for the nll:
        scaled_p = log_probs.exp_().mul_(toward_q + grad_nll)  # written over ln p (saved for this pass only)
        positions = torch.arange(len(target), device=scaled_p.device)
        scaled_p.index_put_((positions, target), -(toward_q * (1.0 - smoothing) + grad_nll), accumulate=True)
        # The last pass writes the logits' dtype (bfloat16 under autocast): no separate cast.
        grad = torch.sub(scaled_p, toward_q * (smoothing / vocab_size), out=torch.empty_like(scaled_p, dtype=ctx.logits_dtype))
        real = target != ctx.pad_id
        if not bool(real.all()):  # training passes real positions only; other callers' padding gets no gradient
            grad.masked_fill_(~real[:, None], 0.0)
        return grad, None, None, None


def label_smoothed_loss_from_logits(logits: torch.Tensor, target: torch.Tensor, smoothing: float, pad_id: int) -> LossParts:
    """`label_smoothed_loss(logits.log_softmax(-1), target, …)` for (positions, V) logits, through `SmoothedKL`."""
    kl, cross_entropy, nll = SmoothedKL.apply(logits, target, smoothing, pad_id)
    n_tokens = int((target != pad_id).sum())
    entropy = torch.tensor(smoothed_target_entropy(logits.shape[-1], smoothing) * n_tokens)
    return LossParts(kl=kl, cross_entropy=cross_entropy, entropy=entropy, nll=nll, n_tokens=n_tokens)


def loss_in_chunks(
    head: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, target: torch.Tensor, smoothing: float, pad_id: int,
    rows: int = 1024,
) -> LossParts:
    """`label_smoothed_loss_from_logits(head(hidden), target, …)`, `rows` target positions at a time.

    The same sums, but the (positions × V) logits, log-probabilities and their gradients
    exist one chunk at a time: at an 8,000-word vocabulary a whole batch's are over 100 MB
    each, the output layer is the model's largest matrix product, and chunks that stay in
    the CPU's cache ran the output layer and loss (forward and backward) 1.5× faster.
    head: hidden → logits; hidden: (positions, d_model); target: (positions,).
    """
    parts = [
        label_smoothed_loss_from_logits(head(h), y, smoothing, pad_id) for h, y in zip(hidden.split(rows), target.split(rows))
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
        return loss_in_chunks(self.model.logits, hidden, tgt_out[real], self.smoothing, self.pad_id)
