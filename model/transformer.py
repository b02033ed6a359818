"""The encoder–decoder Transformer (Vaswani et al., 2017), from torch primitives.

    source ids → embed·√d_model + positions → N encoder layers → memory
    target ids → embed·√d_model + positions → N decoder layers (self-attention, then
                 attention over memory) → final Linear → logits → log-softmax

Every sub-layer (attention or feed-forward) sits inside a residual connection with a
LayerNorm, written out in each layer's `forward`:

    post-LN (the paper, the default):  x ← LayerNorm(x + f(x))
    pre-LN (--pre-norm):               x ← x + f(LayerNorm(x)), and one final LayerNorm per stack

`skip(x)` is the residual (skip) connection: x itself, or 0 under --no-residual, the
experiment that shows what the connection is for (x ← LayerNorm(f(x))).

`forward` takes only what the math needs: what `tt explain`, `--attention` and `--lens`
show is collected from outside with forward hooks (`tt.model.recording`).
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from tt.model.attention import KVCache, KeysValues, MultiHeadAttention, padding_allowed
from tt.model.model_config import ModelConfig  # the shape and the special ids, a plain dataclass

ACTIVATIONS = {"relu": torch.relu, "silu": F.silu, "gelu": F.gelu}  # gelu: the exact (erf) form


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def zero(x: torch.Tensor) -> float:
    return 0.0


class Dropout(nn.Module):
    """Inverted dropout: in training, zero each value with probability p and scale the rest by
    1/(1 − p), so that the expected value is unchanged and evaluation needs no rescaling.

    Written out for speed on CPUs, where drawing random numbers is the expensive part: torch's
    own kernel draws its mask about 3× slower than comparing random numbers with p, and
    `keep_mask` needs half as many random numbers again (one 32-bit word for two values). On
    a CPU with bfloat16 matrix units, dropout was a third of a training step's time before that.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        scale = keep_mask(x.shape, self.p, x.device).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scale  # 0 where dropped, x / (1 − p) where kept


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """True with probability 1 − p (to within 1/32,768), independently for each value.

    One 32-bit random word per two values: torch's random_() fills int32 with 31 random bits,
    which read as two int16 halves are one half uniform over all 65,536 values and one over
    0 … 32,767 (its top bit is the word's sign bit, always 0). Each half has its own threshold.
    """
    count = math.prod(shape)
    words = torch.empty((count + 1) // 2, dtype=torch.int32, device=device).random_()
    full, positive = min(-32768 + round(p * 65536), 32767), min(round(p * 32768), 32767)  # int16's range
    low_half_first = sys.byteorder == "little"
    thresholds = torch.tensor([full, positive] if low_half_first else [positive, full], dtype=torch.int16, device=device)
    keep = words.view(torch.int16).view(-1, 2) >= thresholds
    return keep.view(-1)[:count].view(shape)


class FeedForward(nn.Module):
    """Position-wise: Linear(d_model → d_ff) → ReLU (or SiLU, GELU) → Linear(d_ff → d_model).

    No dropout inside (as in the paper): the residual connection drops out its output, and
    random numbers for the 4× wider hidden layer would cost more CPU time than they repay.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu"):
        super().__init__()
        self.expand = nn.Linear(d_model, d_ff)
        self.activation = ACTIVATIONS[activation]
        self.contract = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.contract(self.activation(self.expand(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = MultiHeadAttention(d, config.n_heads)
        self.self_attn_norm = nn.LayerNorm(d)
        self.feed_forward = FeedForward(d, config.d_ff, config.activation)
        self.feed_forward_norm = nn.LayerNorm(d)
        self.dropout = Dropout(config.dropout)
        self.pre_norm = config.pre_norm
        self.skip = identity if config.residual else zero

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        skip, drop = self.skip, self.dropout
        if self.pre_norm:
            h = self.self_attn_norm(x)
            x = skip(x) + drop(self.self_attn(h, h, allowed))
            x = skip(x) + drop(self.feed_forward(self.feed_forward_norm(x)))
        else:
            x = self.self_attn_norm(skip(x) + drop(self.self_attn(x, x, allowed)))
            x = self.feed_forward_norm(skip(x) + drop(self.feed_forward(x)))
        return x  # (batch, src_len, d_model)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = MultiHeadAttention(d, config.n_heads)
        self.self_attn_norm = nn.LayerNorm(d)
        self.cross_attn = MultiHeadAttention(d, config.n_heads)
        self.cross_attn_norm = nn.LayerNorm(d)
        self.feed_forward = FeedForward(d, config.d_ff, config.activation)
        self.feed_forward_norm = nn.LayerNorm(d)
        self.dropout = Dropout(config.dropout)
        self.pre_norm = config.pre_norm
        self.skip = identity if config.residual else zero

    def forward(
        self,
        x: torch.Tensor,  # (batch, tgt_len, d_model)
        memory: torch.Tensor,  # (batch, src_len, d_model): the encoder's output
        allowed: torch.Tensor,  # (batch, 1, 1, src_len): not the source's padding
        cache: tuple[KeysValues, KeysValues] | None = None,  # decoding: (self, cross) keys and values
    ) -> torch.Tensor:
        self_cache, cross_cache = cache or (None, None)
        skip, drop = self.skip, self.dropout
        if self.pre_norm:
            h = self.self_attn_norm(x)
            x = skip(x) + drop(self.self_attn(h, h, causal=True, cache=self_cache))
            x = skip(x) + drop(self.cross_attn(self.cross_attn_norm(x), memory, allowed, cache=cross_cache))
            x = skip(x) + drop(self.feed_forward(self.feed_forward_norm(x)))
        else:
            x = self.self_attn_norm(skip(x) + drop(self.self_attn(x, x, causal=True, cache=self_cache)))
            x = self.cross_attn_norm(skip(x) + drop(self.cross_attn(x, memory, allowed, cache=cross_cache)))
            x = self.feed_forward_norm(skip(x) + drop(self.feed_forward(x)))
        return x


def sinusoidal_positions(max_positions: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(…): (max_positions, d_model).

    Computed in float64, then rounded: in float32 the angle of position 1000 would already be
    off by about 1e-4. Marian's table holds the same numbers with the sines in the first
    half; tt.model.marian reorders the model dimension to match, so one table serves both.
    """
    position = torch.arange(max_positions, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(max_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table.float()


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        tie = config.tie_embeddings and config.src_vocab_size == config.tgt_vocab_size
        # Filled by _init_weights below (nn.Embedding's own N(0, 1) fill would be redone there).
        self.src_embed = nn.Embedding(config.src_vocab_size, d, _weight=torch.empty(config.src_vocab_size, d))
        self.tgt_embed = self.src_embed if tie else nn.Embedding(config.tgt_vocab_size, d, _weight=torch.empty(config.tgt_vocab_size, d))
        # Not a parameter and not saved: recomputed from the formula at load time. A shapes-only
        # skeleton (meta device, for checking a checkpoint) skips the formula: computed there
        # it would pull in torch's compiler stack, seconds of start-up.
        skeleton = torch.empty(0).is_meta
        table = torch.empty(config.max_positions, d) if skeleton else sinusoidal_positions(config.max_positions, d)
        self.register_buffer("positions", table, persistent=False)
        self.embed_dropout = Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        # Pre-LN leaves the stream un-normalized after the last layer, so it ends with a norm.
        self.encoder_norm = nn.LayerNorm(d) if config.pre_norm else nn.Identity()
        self.final_norm = nn.LayerNorm(d) if config.pre_norm else nn.Identity()
        self.project = nn.Linear(d, config.tgt_vocab_size, bias=config.output_bias)
        if not skeleton:  # a shapes-only skeleton has nothing to fill
            self._init_weights()
        if tie or config.tie_output:
            self.project.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                nn.init.xavier_uniform_(param)
        # Embeddings are multiplied by √d_model, so N(0, 1/d_model) gives unit-scale inputs.
        nn.init.normal_(self.src_embed.weight, std=self.config.d_model**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=self.config.d_model**-0.5)
        if self.project.bias is not None:
            nn.init.zeros_(self.project.bias)

    def embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = ids.shape[1]
        if offset + length > self.config.max_positions:
            raise ValueError(f"sequence of {offset + length} tokens exceeds max_positions")
        scale = math.sqrt(self.config.d_model) if self.config.scale_embedding else 1.0
        x = table(ids) * scale + self.positions[offset : offset + length]
        return self.embed_dropout(x)

    def encode(self, src: torch.Tensor, src_pad_mask: torch.Tensor) -> torch.Tensor:
        allowed = padding_allowed(src_pad_mask)
        x = self.embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, allowed)
        return self.encoder_norm(x)  # (batch, src_len, d_model): the "memory"

    def new_cache(self, memory: torch.Tensor, src_pad_mask: torch.Tensor) -> KVCache:
        return KVCache.start(memory, padding_allowed(src_pad_mask), len(self.decoder))

    def decode(
        self,
        tgt_in: torch.Tensor,  # (batch, new_len): all of <s> y1 …, or only the newest tokens with a cache
        memory: torch.Tensor,
        allowed: torch.Tensor,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        offset = cache.length if cache is not None else 0
        x = self.embed(self.tgt_embed, tgt_in, offset)
        for index, layer in enumerate(self.decoder):
            x = layer(x, memory, allowed, cache.layers[index] if cache is not None else None)
        if cache is not None:
            cache.length += tgt_in.shape[1]
        return x  # (batch, new_len, d_model)

    def decode_step(self, tgt_in: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Decoding: the newest tokens through the decoder, earlier ones from the cache."""
        return self.decode(tgt_in, cache.memory, cache.allowed, cache)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output head up to the softmax: final norm → Linear → logits (batch, len, tgt_vocab)."""
        return self.project(self.final_norm(x))

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The output head: final norm → Linear → logits → log-softmax (the softmax over words).

        Logits are cast to float32 first: under bfloat16 autocast a softmax over 8,000
        words would lose the small probabilities that the loss and the tables care about.
        Training's loss takes the logits instead and applies the same log-softmax itself
        (`tt.model.loss.SmoothedKL`), so that it can write the gradient out.
        """
        return self.logits(x).float().log_softmax(dim=-1)  # (batch, len, tgt_vocab); probs = .exp()

    def forward(self, src: torch.Tensor, src_pad_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: log-probabilities of every next target token, all positions at once."""
        return self.log_probs(self.decoder_states(src, src_pad_mask, tgt_in))

    def decoder_states(self, src: torch.Tensor, src_pad_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing up to the output head: (batch, tgt_len, d_model)."""
        memory = self.encode(src, src_pad_mask)
        return self.decode(tgt_in, memory, padding_allowed(src_pad_mask))


def tied_names(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that are one tensor (the tied embedding: src_embed.weight,
    tgt_embed.weight, project.weight), each sorted; untied parameters are groups of one."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [sorted(names) for names in groups.values()]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied matrix is counted once
