"""Multi-head attention, and the key/value cache that makes decoding one token per step.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Each of `n_heads` heads projects the input to its own d_k = d_model / n_heads dimensional
queries, keys and values, attends, and the heads' outputs are concatenated and projected
back to d_model.

Two ways to compute the same thing:
- decoding calls `F.scaled_dot_product_attention`, torch's fused kernel;
- training and inspection (`need_weights=True`) spell the formula out below, softmax and
  all: the fused kernel's backward pass is slow on CPU for short sequences, and inspection
  wants the attention weights themselves.
A test checks that both give the same output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape  # (batch, length, d_model) → (batch, n_heads, length, d_k)
        return x.view(batch, length, self.n_heads, self.d_k).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def forward(
        self,
        x: torch.Tensor,  # (batch, q_len, d_model), the positions asking
        k: torch.Tensor,  # (batch, n_heads, k_len, d_k), already projected (see keys_values)
        v: torch.Tensor,
        allowed: torch.Tensor | None = None,  # (batch, 1, 1 or q_len, k_len), True = may attend
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.split_heads(self.q_proj(x))  # (batch, n_heads, q_len, d_k)
        # Dropout on the attention weights costs a random number per weight; the default
        # config leaves it at 0 (dropout still acts on every sub-layer's output).
        dropout = self.dropout if self.training else 0.0
        if need_weights or self.training:
            # Training uses the formula too: on CPU, for sentence-length sequences, the fused
            # kernel's backward pass is several times slower than these three plain ops.
            context, weights = attention_with_weights(q, k, v, allowed, causal, dropout)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, is_causal=causal and allowed is None)
            weights = None
        batch, _, q_len, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, q_len, self.n_heads * self.d_k)
        return self.out_proj(context), weights


def attention_with_weights(q, k, v, allowed, causal, dropout):
    """softmax(Q Kᵀ / √d_k) V, written out; returns the weights (batch, n_heads, q_len, k_len) too."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        q_len, k_len = scores.shape[-2:]
        # Position i sees keys 0 … i (+ any earlier cached keys): never a later target token.
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).triu(k_len - q_len + 1)
        scores = scores.masked_fill(future, float("-inf"))
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(dim=-1)
    return F.dropout(weights, dropout) @ v, weights


def padding_allowed(src_pad_mask: torch.Tensor) -> torch.Tensor:
    """(batch, src_len) True-at-padding → (batch, 1, 1, src_len) True-where-attention-may-look."""
    return ~src_pad_mask[:, None, None, :]


@dataclass
class KVCache:
    """What decoding keeps between steps, per decoder layer.

    `cross` holds the keys and values of the encoder output, computed once per sentence;
    `self_keys`/`self_values` grow by one position per generated token, so each step
    only runs the newest token through the decoder.
    """

    cross: list[tuple[torch.Tensor, torch.Tensor]]
    allowed: torch.Tensor  # (batch, 1, 1, src_len)
    self_keys: list[torch.Tensor | None] = field(default_factory=list)
    self_values: list[torch.Tensor | None] = field(default_factory=list)
    length: int = 0  # target positions already processed

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.self_keys[layer] is not None:
            k = torch.cat([self.self_keys[layer], k], dim=2)
            v = torch.cat([self.self_values[layer], v], dim=2)
        self.self_keys[layer], self.self_values[layer] = k, v
        return k, v

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder, repeat) batch rows: for dropping finished sentences and for beams."""
        self.cross = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.cross]
        self.allowed = self.allowed.index_select(0, rows)
        self.self_keys = [None if k is None else k.index_select(0, rows) for k in self.self_keys]
        self.self_values = [None if v is None else v.index_select(0, rows) for v in self.self_values]
