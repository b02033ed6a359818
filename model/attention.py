"""Multi-head attention, and the key/value cache that makes decoding one token per step.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Each of `n_heads` heads projects the input to its own d_k = d_model / n_heads dimensional
queries, keys and values, attends, and the heads' outputs are concatenated and projected
back to d_model.

Two ways to compute the same thing:
- decoding calls `F.scaled_dot_product_attention`, torch's fused kernel;
- training and inspection spell the formula out in `attention_with_weights`, softmax and
  all: the fused kernel's backward pass is slow on CPU for short sentences, and inspection
  wants the attention weights themselves (they pass through `self.weights`, an identity
  module that `tt.model.recording` hooks).
A test checks that both give the same output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.weights = nn.Identity()  # the attention weights pass here: a place to hook, no parameters
        self.show_weights = False  # set by `recording`: take the written-out path so weights exist

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape  # (batch, length, d_model) → (batch, n_heads, length, d_k)
        return x.view(batch, length, self.n_heads, self.d_k).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.k_proj(source)), self.split_heads(self.v_proj(source))

    def forward(
        self,
        x: torch.Tensor,  # (batch, q_len, d_model): the positions asking
        source: torch.Tensor,  # (batch, k_len, d_model): what they look at (x itself for self-attention)
        allowed: torch.Tensor | None = None,  # (batch, 1, 1, k_len), True = may attend
        causal: bool = False,  # never look at a later position (decoder self-attention)
        cache: "KeysValues | None" = None,  # decoding: keys and values kept from earlier steps
    ) -> torch.Tensor:
        q = self.split_heads(self.q_proj(x))  # (batch, n_heads, q_len, d_k)
        k, v = self.keys_values(source) if cache is None else cache.update(self, source)
        if self.training or self.show_weights:
            context, weights = attention_with_weights(q, k, v, allowed, causal)
            self.weights(weights)
        else:
            context = fused_attention(q, k, v, allowed, causal)
        batch, _, q_len, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, q_len, self.n_heads * self.d_k)
        return self.out_proj(context)  # (batch, q_len, d_model)


def causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """(q_len, k_len), True where a position may look: keys 0 … i, plus any earlier cached keys."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)


def attention_with_weights(q, k, v, allowed, causal):
    """softmax(Q Kᵀ / √d_k) V, written out; returns the weights (batch, n_heads, q_len, k_len) too."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~causal_mask(*scores.shape[-2:], q.device), float("-inf"))
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def fused_attention(q, k, v, allowed, causal):
    """The same formula through torch's fused kernel (no weights to show)."""
    q_len, k_len = q.shape[-2], k.shape[-2]
    if causal and q_len > 1:  # one newest position may see every key: no mask needed
        mask = causal_mask(q_len, k_len, q.device)
        allowed = mask if allowed is None else allowed & mask
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def padding_allowed(src_pad_mask: torch.Tensor) -> torch.Tensor:
    """(batch, src_len) True-at-padding → (batch, 1, 1, src_len) True-where-attention-may-look."""
    return ~src_pad_mask[:, None, None, :]


@dataclass
class KeysValues:
    """One attention module's keys and values, kept between decoding steps.

    Self-attention (`grows=True`) adds the newest positions' keys and values each step, so
    each step only runs the newest token through the decoder; cross-attention computes the
    encoder output's keys and values once per sentence and reuses them.
    """

    grows: bool
    k: torch.Tensor | None = None  # (batch, n_heads, length, d_k)
    v: torch.Tensor | None = None

    def update(self, attention: MultiHeadAttention, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None or self.grows:
            k, v = attention.keys_values(source)
            if self.k is not None:
                k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
            self.k, self.v = k, v
        return self.k, self.v

    def select(self, rows: torch.Tensor) -> None:
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, rows), self.v.index_select(0, rows)


@dataclass
class KVCache:
    """What decoding keeps between steps: per decoder layer, its self- and cross-attention."""

    memory: torch.Tensor  # (batch, src_len, d_model): the encoder output
    allowed: torch.Tensor  # (batch, 1, 1, src_len)
    layers: list[tuple[KeysValues, KeysValues]]  # (self-attention, cross-attention) per layer
    length: int = 0  # target positions already processed

    @classmethod
    def start(cls, memory: torch.Tensor, allowed: torch.Tensor, n_layers: int) -> "KVCache":
        return cls(memory, allowed, [(KeysValues(grows=True), KeysValues(grows=False)) for _ in range(n_layers)])

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder, repeat) batch rows: for dropping finished sentences and for beams."""
        self.memory = self.memory.index_select(0, rows)
        self.allowed = self.allowed.index_select(0, rows)
        for self_kv, cross_kv in self.layers:
            self_kv.select(rows)
            cross_kv.select(rows)
