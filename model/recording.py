"""What inspection sees inside a forward pass, collected with forward hooks.

`forward` takes only what the math needs; `tt translate --attention/--lens` and `tt explain`
wrap a pass in `recording(model, ...)` instead:

    with recording(model, attention=True, layers=True) as seen:
        model.decode(...)
    seen.attention   # one (batch, n_heads, tgt_len, src_len) per decoder layer: cross-attention weights
    seen.layers      # one (batch, tgt_len, d_model) per decoder layer: its output (the logit lens)
    seen.residual    # one ResidualView per sub-layer (residual=True): x, f(x), x + f(x), the stream out

The hooks are removed when the block ends, whatever happens inside it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from tt.model.transformer import Transformer


@dataclass
class ResidualView:
    """One sub-layer's view of the residual stream, for `tt explain`."""

    name: str  # "encoder.0.self-attention", "decoder.1.cross-attention", …
    x: torch.Tensor  # the stream coming in
    fx: torch.Tensor  # what the sub-layer computed from it
    total: torch.Tensor  # skip(x) + f(x): what the residual connection adds up
    out: torch.Tensor  # the stream going on (after LayerNorm in post-LN)


@dataclass
class Seen:
    attention: list[torch.Tensor] = field(default_factory=list)
    layers: list[torch.Tensor] = field(default_factory=list)
    residual: list[ResidualView] = field(default_factory=list)

    def clear(self) -> None:
        self.attention.clear()
        self.layers.clear()
        self.residual.clear()


def sublayers(model: Transformer) -> Iterator[tuple[str, nn.Module, nn.Module, nn.Module]]:
    """(name, layer, sub-layer, its LayerNorm) for every residual connection, in order."""
    for stack_name, stack in (("encoder", model.encoder), ("decoder", model.decoder)):
        for index, layer in enumerate(stack):
            parts = [("self-attention", layer.self_attn, layer.self_attn_norm)]
            if stack_name == "decoder":
                parts.append(("cross-attention", layer.cross_attn, layer.cross_attn_norm))
            parts.append(("feed-forward", layer.feed_forward, layer.feed_forward_norm))
            for name, sublayer, norm in parts:
                yield f"{stack_name}.{index}.{name}", layer, sublayer, norm


@contextlib.contextmanager
def recording(model: Transformer, attention: bool = False, layers: bool = False, residual: bool = False) -> Iterator[Seen]:
    seen = Seen()
    handles = []
    shown = []
    try:
        if attention:
            for layer in model.decoder:
                layer.cross_attn.show_weights = True
                shown.append(layer.cross_attn)
                handles.append(layer.cross_attn.weights.register_forward_hook(lambda m, i, out: seen.attention.append(out)))
        if layers:
            for layer in model.decoder:
                handles.append(layer.register_forward_hook(lambda m, i, out: seen.layers.append(out)))
        if residual:
            for name, layer, sublayer, norm in sublayers(model):
                handles += _watch_residual(name, layer, sublayer, norm, seen.residual)
        yield seen
    finally:
        for handle in handles:
            handle.remove()
        for module in shown:
            module.show_weights = False


def _watch_residual(name, layer, sublayer, norm, views: list[ResidualView]) -> list:
    """Post-LN: f's hook sees x and f(x), the norm's sees x + f(x) and the stream out.
    Pre-LN: the norm's hook sees x (it comes first), f's sees f(x), and x + f(x) goes on."""
    pending: dict[str, torch.Tensor] = {}

    def on_sublayer(module, inputs, fx):
        if layer.pre_norm:
            x = pending.pop("x")
            total = layer.skip(x) + fx
            views.append(ResidualView(name, x, fx, total, total))
        else:
            pending["x"], pending["fx"] = inputs[0], fx

    def on_norm(module, inputs, out):
        if layer.pre_norm:
            pending["x"] = inputs[0]
        else:
            views.append(ResidualView(name, pending.pop("x"), pending.pop("fx"), inputs[0], out))

    return [sublayer.register_forward_hook(on_sublayer), norm.register_forward_hook(on_norm)]
