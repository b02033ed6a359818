"""tt's Transformer once more, in NumPy and for greedy decoding only: the quick path of `tt translate`.

Importing torch takes 1.3–2 s on a laptop, most of the time a one-sentence `tt translate`
takes. For the everyday case (a tt model folder, sentences given as arguments, greedy
decoding in float32 on the CPU) `tt translate` runs this copy instead and never imports
torch; everything else (files, pipes, beams, sampling, the inspection tables, Marian
folders, GPUs) goes through the PyTorch model.

The model is `tt.model.transformer`; this file follows it step by step, reads the same
model.safetensors (checked against the same checksum), and tests hold the two to the same
translations and log-probabilities. Shapes here are (length, d_model): one sentence at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.data.tokenizer import Tokenizer
from tt.model.decode_config import DecodeConfig, output_limit
from tt.model.model_config import ModelConfig
from tt.model.model_record import CONFIG, WEIGHTS, check_weights_header, read_json, read_model_record, tied_groups, weights_digest
from tt.model.translation import Translation

# x·sigmoid(x) written with tanh, which cannot overflow; NumPy has no erf for the exact GELU
ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0.0), "silu": lambda x: x * 0.5 * (1.0 + np.tanh(x / 2))}
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default


def open_quick_model(folder: Path) -> "NumpyTranslator | None":
    """The folder's model in NumPy, or None where it needs the PyTorch path (a Marian folder,
    GELU, weights not stored as float32). A damaged or hostile tt folder gets the same
    one-line errors as on the PyTorch path: the same checks run first."""
    if (folder / CONFIG).is_file() and "model_type" in read_json(folder / CONFIG):
        return None  # a Hugging Face folder (Marian): its own loader, in tt.model.marian_folder
    config, tokenizer, _ = read_model_record(folder)
    if config.activation not in ACTIVATIONS:
        return None
    weights = read_weights(folder / WEIGHTS, config)
    return None if weights is None else NumpyTranslator(NumpyTransformer(config, weights), tokenizer)


# ---- the weights, checked as tt.model.checkpoint checks them


def read_weights(path: Path, config: ModelConfig) -> dict[str, np.ndarray] | None:
    """Every state_dict name's array (tied matrices under each name), checked against the
    config and the checksum; None where a tensor is not float32. A damaged file raises the
    PyTorch path's errors."""
    if set(check_weights_header(path, config).values()) != {"F32"}:
        return None
    try:
        with safe_open(str(path), "np") as handle:
            weights = {name: handle.get_tensor(name) for name in handle.keys()}
            recorded = (handle.metadata() or {}).get("tt.sha256")
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: cannot load weights ({err})") from None
    for group in tied_groups(config):
        matrix = next(weights[name] for name in group if name in weights)
        weights.update({name: matrix for name in group})
    if recorded is not None and recorded != arrays_digest(weights):
        raise UserError(f"{path}: the weights do not match their checksum: the file is damaged or was altered")
    return weights


def arrays_digest(weights: dict[str, np.ndarray]) -> str:
    """tt.model.checkpoint.model_digest over the same bytes; float32 named as torch names it."""
    return weights_digest((name, array.shape, "torch.float32", np.ascontiguousarray(array).tobytes()) for name, array in weights.items())


# ---- the network, as tt.model.transformer computes it in eval mode (no dropout)


def sinusoidal_positions(max_positions: int, d_model: int) -> np.ndarray:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(…), in float64, then rounded."""
    position = np.arange(max_positions, dtype=np.float64)[:, None]
    frequency = 10000.0 ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    table = np.zeros((max_positions, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency[: d_model // 2])
    return table.astype(np.float32)


def softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass
class KeysValues:
    """One attention module's keys and values, (n_heads, length, d_k) each."""

    k: np.ndarray
    v: np.ndarray


class NumpyTransformer:
    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray]):
        self.config, self.w = config, weights
        self.positions = sinusoidal_positions(config.max_positions, config.d_model)
        self.activation = ACTIVATIONS[config.activation]
        self.skip = 1.0 if config.residual else 0.0  # --no-residual: x ← LayerNorm(f(x))

    def linear(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def layer_norm(self, name: str, x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + LAYER_NORM_EPS) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def heads(self, x: np.ndarray) -> np.ndarray:
        length = x.shape[0]  # (length, d_model) → (n_heads, length, d_k)
        return x.reshape(length, self.config.n_heads, -1).transpose(1, 0, 2)

    def keys_values(self, name: str, source: np.ndarray) -> KeysValues:
        return KeysValues(self.heads(self.linear(f"{name}.k_proj", source)), self.heads(self.linear(f"{name}.v_proj", source)))

    def attention(self, name: str, x: np.ndarray, kv: KeysValues) -> np.ndarray:
        """softmax(Q Kᵀ / √d_k) V per head; every key may be seen (one sentence: no padding,
        and decoding feeds one new position at a time, which may see all earlier ones)."""
        q = self.heads(self.linear(f"{name}.q_proj", x))
        weights = softmax(q @ kv.k.transpose(0, 2, 1) / math.sqrt(q.shape[-1]))
        context = (weights @ kv.v).transpose(1, 0, 2).reshape(x.shape[0], -1)
        return self.linear(f"{name}.out_proj", context)

    def feed_forward(self, name: str, x: np.ndarray) -> np.ndarray:
        return self.linear(f"{name}.contract", self.activation(self.linear(f"{name}.expand", x)))

    def sublayer(self, name: str, x: np.ndarray, f) -> np.ndarray:
        """The residual connection with its LayerNorm, post-LN or pre-LN."""
        if self.config.pre_norm:
            return self.skip * x + f(self.layer_norm(f"{name}_norm", x))
        return self.layer_norm(f"{name}_norm", self.skip * x + f(x))

    def embed(self, table: str, ids: list[int], offset: int = 0) -> np.ndarray:
        scale = math.sqrt(self.config.d_model) if self.config.scale_embedding else 1.0
        return self.w[f"{table}.weight"][ids] * np.float32(scale) + self.positions[offset : offset + len(ids)]

    def encode(self, src_ids: list[int]) -> np.ndarray:
        x = self.embed("src_embed", src_ids)
        for index in range(self.config.n_layers):
            name = f"encoder.{index}"

            def self_attention(h, name=name):
                return self.attention(f"{name}.self_attn", h, self.keys_values(f"{name}.self_attn", h))

            x = self.sublayer(f"{name}.self_attn", x, self_attention)
            x = self.sublayer(f"{name}.feed_forward", x, lambda h, name=name: self.feed_forward(f"{name}.feed_forward", h))
        return self.layer_norm("encoder_norm", x) if self.config.pre_norm else x

    def decode_step(self, token: int, position: int, memory: np.ndarray, cache: list[list[KeysValues | None]]) -> np.ndarray:
        """One new target position through the decoder; its log-probabilities over the vocabulary."""
        x = self.embed("tgt_embed", [token], position)
        for index in range(self.config.n_layers):
            name, layer_cache = f"decoder.{index}", cache[index]

            def self_attention(h, name=name, layer_cache=layer_cache):
                new = self.keys_values(f"{name}.self_attn", h)
                old = layer_cache[0]
                layer_cache[0] = new if old is None else KeysValues(np.concatenate([old.k, new.k], 1), np.concatenate([old.v, new.v], 1))
                return self.attention(f"{name}.self_attn", h, layer_cache[0])

            def cross_attention(h, name=name, layer_cache=layer_cache):
                if layer_cache[1] is None:  # the encoder output's keys and values, once per sentence
                    layer_cache[1] = self.keys_values(f"{name}.cross_attn", memory)
                return self.attention(f"{name}.cross_attn", h, layer_cache[1])

            x = self.sublayer(f"{name}.self_attn", x, self_attention)
            x = self.sublayer(f"{name}.cross_attn", x, cross_attention)
            x = self.sublayer(f"{name}.feed_forward", x, lambda h, name=name: self.feed_forward(f"{name}.feed_forward", h))
        if self.config.pre_norm:
            x = self.layer_norm("final_norm", x)
        logits = x[-1] @ self.w["project.weight"].T
        if self.config.output_bias:
            logits = logits + self.w["project.bias"]
        return log_softmax(logits)

    def greedy(self, src_ids: list[int], limit: int) -> tuple[list[int], list[float]]:
        """Greedy decoding of one sentence: ids and ln p of each, </s> included when reached."""
        config = self.config
        memory = self.encode(src_ids)
        cache: list[list[KeysValues | None]] = [[None, None] for _ in range(config.n_layers)]
        banned = sorted({config.pad_id, config.start_id})  # not words (tt.model.decode.never_chosen)
        tokens: list[int] = []
        log_probs: list[float] = []
        token = config.start_id
        while True:
            distribution = self.decode_step(token, len(tokens), memory, cache)
            allowed = distribution.copy()
            allowed[banned] = -np.inf
            token = int(allowed.argmax())
            tokens.append(token)
            log_probs.append(float(distribution[token]))
            if token == config.eos_id or len(tokens) >= limit:
                return tokens, log_probs


class NumpyTranslator:
    """Text in → normalized → source ids → greedy decoding → text, as tt.model.translator does."""

    def __init__(self, model: NumpyTransformer, tokenizer: Tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def translate(self, texts: list[str], config: DecodeConfig | None = None) -> list[Translation]:
        config = config or DecodeConfig()
        out = []
        for text in texts:
            normalized = normalize(text)
            if not normalized:
                out.append(Translation(text, "", [], None))
                continue
            ids = self.tokenizer.encode_src(normalized)
            fitted = self.tokenizer.fit_source(ids, self.model.config.max_positions)
            tokens, _ = self.model.greedy(fitted, output_limit(len(fitted), config, self.model.config.max_positions))
            out.append(Translation(
                source=text,
                translation=self.tokenizer.decode_tgt(tokens),
                src_pieces=[self.tokenizer.src_piece(i) for i in fitted],
                hypothesis=None,
                truncated_from=len(ids) if len(ids) > len(fitted) else None,
                unfinished=bool(tokens) and tokens[-1] != self.model.config.eos_id,
            ))
        return out
