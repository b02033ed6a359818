"""The encoder–decoder Transformer (Vaswani et al., 2017), from torch primitives.

    source ids → embed·√d_model + positions → N encoder layers → memory
    target ids → embed·√d_model + positions → N decoder layers (self-attention, then
                 attention over memory) → final Linear → logits → log-softmax

Every sub-layer (attention or feed-forward) sits inside a residual connection with a
LayerNorm: see `Residual`, the one place this happens. Post-LN (the paper's order) is the
default; pre-LN normalizes before the sub-layer and adds one final LayerNorm per stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from tt.model.attention import KVCache, MultiHeadAttention, padding_allowed


@dataclass
class ModelConfig:
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    n_layers: int = 3  # in the encoder, and again in the decoder
    dropout: float = 0.1  # on embeddings and on each sub-layer's output (the paper's places)
    attention_dropout: float = 0.0  # on attention weights (off: it disables the fused kernel)
    pre_norm: bool = False  # False: post-LN as in the paper; True: pre-LN
    tie_embeddings: bool = True  # one matrix for source, target and output (joint vocabulary only)
    max_positions: int = 1024


@dataclass
class ResidualTrace:
    """One sub-layer's view of the residual stream, for `tt explain`."""

    name: str
    x: torch.Tensor  # the stream coming in
    fx: torch.Tensor  # what the sub-layer computed from it
    total: torch.Tensor  # x + f(x)
    out: torch.Tensor  # the stream going on (after LayerNorm in post-LN)


class Residual(nn.Module):
    """x → LayerNorm(x + f(x)) (post-LN), or x → x + f(LayerNorm(x)) (pre-LN)."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, sublayer: Callable, trace: list | None = None, name: str = "") -> torch.Tensor:
        if self.pre_norm:
            fx = sublayer(self.norm(x))
            out = x + self.dropout(fx)
        else:
            fx = sublayer(x)
            out = self.norm(x + self.dropout(fx))
        if trace is not None:
            trace.append(ResidualTrace(name, x, fx, x + fx, out))
        return out


class FeedForward(nn.Module):
    """Position-wise: Linear(d_model → d_ff) → ReLU → Linear(d_ff → d_model).

    No dropout inside (as in the paper): the residual connection drops out its output, and
    random numbers for the 4× wider hidden layer would cost more CPU time than they repay.
    """

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.expand = nn.Linear(d_model, d_ff)
        self.contract = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.contract(torch.relu(self.expand(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d, drop, pre = config.d_model, config.dropout, config.pre_norm
        self.self_attn = MultiHeadAttention(d, config.n_heads, config.attention_dropout)
        self.feed_forward = FeedForward(d, config.d_ff)
        self.residual_attn = Residual(d, drop, pre)
        self.residual_ff = Residual(d, drop, pre)

    def forward(self, x, allowed, trace=None):
        def attend(y):
            k, v = self.self_attn.keys_values(y)
            return self.self_attn(y, k, v, allowed)[0]

        x = self.residual_attn(x, attend, trace, "self-attention")
        return self.residual_ff(x, self.feed_forward, trace, "feed-forward")


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d, drop, pre = config.d_model, config.dropout, config.pre_norm
        self.self_attn = MultiHeadAttention(d, config.n_heads, config.attention_dropout)
        self.cross_attn = MultiHeadAttention(d, config.n_heads, config.attention_dropout)
        self.feed_forward = FeedForward(d, config.d_ff)
        self.residual_self = Residual(d, drop, pre)
        self.residual_cross = Residual(d, drop, pre)
        self.residual_ff = Residual(d, drop, pre)

    def forward(self, x, memory_kv, allowed, index, cache: KVCache | None, trace=None, attention=None):
        def attend_self(y):
            k, v = self.self_attn.keys_values(y)
            if cache is not None:  # keys and values of earlier positions come from the cache
                k, v = cache.append(index, k, v)
            # With a cache only the newest position asks, and it may see all keys: no mask.
            return self.self_attn(y, k, v, causal=cache is None or y.shape[1] > 1)[0]

        def attend_source(y):
            out, weights = self.cross_attn(y, *memory_kv, allowed, need_weights=attention is not None)
            if attention is not None:
                attention.append(weights)  # (batch, n_heads, tgt_len, src_len)
            return out

        x = self.residual_self(x, attend_self, trace, "self-attention")
        x = self.residual_cross(x, attend_source, trace, "cross-attention")
        return self.residual_ff(x, self.feed_forward, trace, "feed-forward")


def sinusoidal_positions(max_positions: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(…): (max_positions, d_model)."""
    position = torch.arange(max_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_positions, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        tie = config.tie_embeddings and config.src_vocab_size == config.tgt_vocab_size
        self.src_embed = nn.Embedding(config.src_vocab_size, d)
        self.tgt_embed = self.src_embed if tie else nn.Embedding(config.tgt_vocab_size, d)
        # Not a parameter and not saved: recomputed from the formula at load time.
        self.register_buffer("positions", sinusoidal_positions(config.max_positions, d), persistent=False)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        # Pre-LN leaves the stream un-normalized after the last layer, so it ends with a norm.
        self.encoder_norm = nn.LayerNorm(d) if config.pre_norm else nn.Identity()
        self.final_norm = nn.LayerNorm(d) if config.pre_norm else nn.Identity()
        self.project = nn.Linear(d, config.tgt_vocab_size, bias=False)
        self._init_weights()
        if tie:
            self.project.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                nn.init.xavier_uniform_(param)
        # Embeddings are multiplied by √d_model, so N(0, 1/d_model) gives unit-scale inputs.
        nn.init.normal_(self.src_embed.weight, std=self.config.d_model**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=self.config.d_model**-0.5)

    def embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = ids.shape[1]
        if offset + length > self.config.max_positions:
            raise ValueError(f"sequence of {offset + length} tokens exceeds max_positions")
        x = table(ids) * math.sqrt(self.config.d_model) + self.positions[offset : offset + length]
        return self.embed_dropout(x)

    def encode(self, src: torch.Tensor, src_pad_mask: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        allowed = padding_allowed(src_pad_mask)
        x = self.embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, allowed, trace)
        return self.encoder_norm(x)  # (batch, src_len, d_model): the "memory"

    def memory_keys_values(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.cross_attn.keys_values(memory) for layer in self.decoder]

    def new_cache(self, memory: torch.Tensor, src_pad_mask: torch.Tensor) -> KVCache:
        n = len(self.decoder)
        return KVCache(self.memory_keys_values(memory), padding_allowed(src_pad_mask), [None] * n, [None] * n)

    def decode(
        self,
        tgt_in: torch.Tensor,  # (batch, new_len): all of <s> y1 … , or only the newest token with a cache
        memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
        allowed: torch.Tensor,
        cache: KVCache | None = None,
        layers_out: list | None = None,  # collects each layer's output, for the logit lens
        trace: list | None = None,
        attention: list | None = None,
    ) -> torch.Tensor:
        offset = cache.length if cache is not None else 0
        x = self.embed(self.tgt_embed, tgt_in, offset)
        for index, layer in enumerate(self.decoder):
            x = layer(x, memory_kv[index], allowed, index, cache, trace, attention)
            if layers_out is not None:
                layers_out.append(x)
        if cache is not None:
            cache.length += tgt_in.shape[1]
        return x  # (batch, new_len, d_model)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The output head: final norm → Linear → logits → log-softmax (the only softmax over words).

        Logits are cast to float32 first: under bfloat16 autocast a softmax over 8,000
        words would lose the small probabilities that the loss and the tables care about.
        """
        logits = self.project(self.final_norm(x)).float()
        return logits.log_softmax(dim=-1)  # (batch, len, tgt_vocab); probs = .exp()

    def forward(self, src: torch.Tensor, src_pad_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: log-probabilities of every next target token, all positions at once."""
        memory = self.encode(src, src_pad_mask)
        hidden = self.decode(tgt_in, self.memory_keys_values(memory), padding_allowed(src_pad_mask))
        return self.log_probs(hidden)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied matrix is counted once
