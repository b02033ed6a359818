"""The backward residual stream: how much gradient reaches each sub-layer's input, and by which path.

A sub-layer computes skip(x) + f(x) (then LayerNorm, in post-LN). Backpropagation brings
the gradient g = ∂L/∂(skip(x) + f(x)) to the sum and splits it into two paths to x:

    through the residual path:  g · ∂skip/∂x = g        (0 under --no-residual)
    through f(x):               g · ∂f/∂x   (the Jacobian of attention or feed-forward)
    ∂L/∂x = the two added up

The residual path hands g down unchanged, however deep the stack: that is why a deep
network with residual connections still trains its first layers. The tensors come from the
forward hooks of `tt.model.recording` (no change to `forward`): f(x) is the sub-layer's own
output, so ∂L/∂f(x) is g (dropout is off in eval mode), and ∂L/∂x is asked of autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tt.data.batches import Batch
from tt.model.attention import padding_allowed
from tt.model.recording import recording
from tt.model.transformer import Transformer


@dataclass
class GradientPaths:
    name: str  # "decoder.1.cross-attention", …
    via_residual: float  # ‖g · ∂skip/∂x‖
    via_f: float  # ‖g · ∂f/∂x‖
    total: float  # ‖∂L/∂x‖


def backward_stream(model: Transformer, batch: Batch, index: int, target: int) -> list[GradientPaths]:
    """For L = −ln p(target) at target position `index` (0-based) of a one-pair batch: every sub-layer's split.

    Decoder sub-layers: the gradient at that position. Encoder sub-layers: over the whole
    source (every source position feeds the prediction through cross-attention).
    """
    model.eval()
    with torch.enable_grad(), recording(model, residual=True) as seen:
        memory = model.encode(batch.src, batch.src_pad_mask)
        hidden = model.decode(batch.tgt_in, memory, padding_allowed(batch.src_pad_mask))
        loss = -model.log_probs(hidden[:, index])[0, target]
    views = seen.residual
    grads = torch.autograd.grad(loss, [v.fx for v in views] + [v.x for v in views], allow_unused=True)
    paths = []
    for view, g, dx in zip(views, grads[: len(views)], grads[len(views) :]):
        g = torch.zeros_like(view.fx) if g is None else g
        dx = torch.zeros_like(view.x) if dx is None else dx
        residual = g if model.config.residual else torch.zeros_like(g)
        where = (0, index) if view.name.startswith("decoder.") else (0,)
        paths.append(GradientPaths(
            view.name,
            via_residual=float(residual[where].norm()),
            via_f=float((dx - residual)[where].norm()),
            total=float(dx[where].norm()),
        ))
    return paths
