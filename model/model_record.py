"""What a tt model folder says about its model, read without torch: config.json, the
tokenizer, and what model.safetensors must hold.

Both weight loaders start here: tt.model.checkpoint (PyTorch, every command) and
tt.model.numpy_model (the quick path of `tt translate`). Everything is checked before a
single weight is read: the config against tt's size limits, the tokenizer against the
config, the weights file's header against the config; the weights, once read, against
their checksum (`weights_digest`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from safetensors import SafetensorError, safe_open

from tt.data.corpus import read_bytes
from tt.data.errors import UserError
from tt.data.tokenizer import Tokenizer
from tt.model.configs import check_model_config, config_from_dict
from tt.model.model_config import ModelConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def read_json(path: Path) -> dict:
    try:
        record = json.loads(read_bytes(path))
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, a 5000-digit number, [[[[…
        raise UserError(f"{path}: not valid JSON ({str(err)[:120]})") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: expected a JSON object")
    return record


def read_model_record(folder: Path) -> tuple[ModelConfig, Tokenizer, dict]:
    """The checked model config, the tokenizer, and the whole config.json record."""
    if not folder.exists():
        raise UserError(f"{folder}: no such model folder (train one with `tt train`, or pass --model)")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (--model takes a model folder: tt's own, or a Hugging Face Marian one)")
    if (folder / "model.bin").is_file() and not (folder / WEIGHTS).exists():
        raise UserError(f"{folder}: a CTranslate2 model, which only CTranslate2 runs; give tt the folder it was exported from")
    if not (folder / WEIGHTS).exists():
        raise UserError(f"{folder}: no {WEIGHTS} here; is this a tt model folder?")
    record = read_json(folder / CONFIG)
    if "model" not in record and isinstance(record.get("model_type"), str):  # a Hugging Face config.json
        raise UserError(f"{folder}: a Hugging Face {record['model_type']!r} model; tt reads Marian models (model_type \"marian\") and its own")
    where = f"{folder / CONFIG}: model"
    model_config = config_from_dict(ModelConfig, record.get("model"), where)
    check_model_config(model_config, where)
    tokenizer = Tokenizer.load(folder)
    if (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) != (model_config.src_vocab_size, model_config.tgt_vocab_size):
        raise UserError(
            f"{folder}: the tokenizer has {tokenizer.src_vocab_size}/{tokenizer.tgt_vocab_size} pieces but config.json "
            f"says {model_config.src_vocab_size}/{model_config.tgt_vocab_size}"
        )
    return model_config, tokenizer, record


# ---- model.safetensors: the names and shapes tt.model.transformer gives its weights


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every name of the PyTorch model's state_dict() and its shape (tied matrices under each name)."""
    d, ff = config.d_model, config.d_ff
    shapes: dict[str, tuple[int, ...]] = {
        "src_embed.weight": (config.src_vocab_size, d),
        "tgt_embed.weight": (config.tgt_vocab_size, d),
        "project.weight": (config.tgt_vocab_size, d),
    }
    if config.output_bias:
        shapes["project.bias"] = (config.tgt_vocab_size,)

    def linear(name: str, d_in: int, d_out: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (d_out, d_in), (d_out,)

    def norm(name: str) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (d,), (d,)

    def attention(name: str) -> None:
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(f"{name}.{projection}", d, d)

    for stack, sublayers in (("encoder", ("self_attn",)), ("decoder", ("self_attn", "cross_attn"))):
        for index in range(config.n_layers):
            for sublayer in sublayers:
                attention(f"{stack}.{index}.{sublayer}")
                norm(f"{stack}.{index}.{sublayer}_norm")
            linear(f"{stack}.{index}.feed_forward.expand", d, ff)
            linear(f"{stack}.{index}.feed_forward.contract", ff, d)
            norm(f"{stack}.{index}.feed_forward_norm")
    if config.pre_norm:
        norm("encoder_norm")
        norm("final_norm")
    return shapes


def tied_groups(config: ModelConfig) -> list[list[str]]:
    """Names that are one matrix, as tt.model.transformer ties them (each group sorted)."""
    if config.tie_embeddings and config.src_vocab_size == config.tgt_vocab_size:
        return [["project.weight", "src_embed.weight", "tgt_embed.weight"]]
    return [["project.weight", "tgt_embed.weight"]] if config.tie_output else []


def check_weights_header(path: Path, config: ModelConfig) -> dict[str, str]:
    """Compare the file's header with the shapes the config implies, before any tensor is
    read; the stored tensors' dtypes ("F32", …) by name."""
    try:
        with safe_open(str(path), "np") as handle:  # the header only: no framework needed
            found = {name: handle.get_slice(name) for name in handle.keys()}
            shapes = {name: tuple(tensor.get_shape()) for name, tensor in found.items()}
            dtypes = {name: tensor.get_dtype() for name, tensor in found.items()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None
    expected = expected_shapes(config)
    for name, shape in shapes.items():
        if name not in expected:
            raise UserError(f"{path}: tensor {name!r} is not part of the model config.json describes")
        if expected[name] != shape:
            raise UserError(f"{path}: tensor {name} has shape {list(shape)}, config.json implies {list(expected[name])}")
    # Every tensor must be there too: otherwise a tiny file with a huge config would make us
    # allocate the whole model before loading noticed the gap. A tied matrix is stored under
    # one of its names.
    tied = tied_groups(config)
    groups = tied + [[name] for name in expected if not any(name in group for group in tied)]
    for names in groups:
        if not any(name in shapes for name in names):
            raise UserError(f"{path}: tensor {names[0]} is missing (the file does not hold the model config.json describes)")
    return dtypes


def weights_digest(tensors: Iterable[tuple[str, tuple[int, ...], str, bytes]]) -> str:
    """SHA-256 over every tensor's (name, shape, dtype name, bytes), in name order: catches a
    damaged or altered file. Both loaders name the dtype as torch does ("torch.float32")."""
    digest = hashlib.sha256()
    for name, shape, dtype, data in sorted(tensors, key=lambda tensor: tensor[0]):
        digest.update(f"{name}:{shape}:{dtype};".encode())
        digest.update(data)
    return digest.hexdigest()
