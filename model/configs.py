"""Configs read from files (config.json, --config) into dataclasses, checked before use.

A config.json may come from a stranger: unknown keys and wrong types are refused with the
file and key named, and a model config must lie within hard size limits before a single
tensor is allocated for it.
"""

from __future__ import annotations

import json
import typing
from dataclasses import fields
from typing import Any, TypeVar

from tt.data.errors import UserError
from tt.model.model_config import ACTIVATION_NAMES, ModelConfig

Config = TypeVar("Config")


def config_from_dict(cls: type[Config], values: dict, where: str) -> Config:
    """Build a dataclass config, refusing unknown keys (a typo must not pass silently) and wrong types."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected an object of {cls.__name__} settings")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"{where}: unknown key {key!r}")
        if not has_type(value, hints[key]):
            raise UserError(f"{where}: {key} = {json.dumps(value)[:40]} is not {_type_name(hints[key])}")
    return cls(**values)


def has_type(value: Any, hint: Any) -> bool:
    allowed = typing.get_args(hint) or (hint,)  # `int | None` → (int, NoneType)
    if isinstance(value, bool):
        return bool in allowed  # JSON true is not a number of layers
    if isinstance(value, int) and float in allowed:
        return True  # 1 is a fine learning rate
    return isinstance(value, tuple(t for t in allowed if isinstance(t, type)))


TYPE_NAMES = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false", "NoneType": "null"}


def _type_name(hint: Any) -> str:
    """`int | None` → "a whole number or null", as a message to a person says it."""
    names = (getattr(t, "__name__", str(t)) for t in (typing.get_args(hint) or (hint,)))
    return " or ".join(TYPE_NAMES.get(name, f"a {name}") for name in names)


# Hard limits on a model's shape, for the command line and for a config.json from a
# stranger alike, checked before anything is allocated. Far above anything tt trains on a
# laptop, far below what would exhaust a machine.
SIZE_LIMITS = {
    "n_layers": (1, 64), "d_model": (2, 16384), "n_heads": (1, 256), "d_ff": (1, 65536),
    "src_vocab_size": (4, 1_048_576), "tgt_vocab_size": (4, 1_048_576), "max_positions": (2, 65536),
}
OPTION_OF_FIELD = {
    "n_layers": "--layers", "d_model": "--d-model", "n_heads": "--heads", "d_ff": "--ff", "dropout": "--dropout",
    "src_vocab_size": "--vocab-size", "tgt_vocab_size": "--vocab-size",  # tt train sets both from the tokenizer's size
}
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32
MAX_SEED = 2**31 - 1  # SentencePiece takes an unsigned 32-bit seed, torch a 64-bit one: the smaller, signed


def estimated_parameters(config: ModelConfig) -> int:
    """Parameter count from the config alone (within a few percent: biases and norms are left out)."""
    d, layers = config.d_model, config.n_layers
    embeddings = (config.src_vocab_size + 2 * config.tgt_vocab_size) * d
    per_layer = 4 * d * d + 2 * d * config.d_ff  # self-attention + feed-forward
    return embeddings + layers * per_layer + layers * (per_layer + 4 * d * d)  # decoder adds cross-attention


def check_model_config(config: ModelConfig, where: str | None = None) -> None:
    """The one checker of a model's shape. `where` names a config file; without it the
    message names the command-line option (--layers), as `tt train` reports it."""

    def name(field: str) -> str:
        return f"{where}: {field}" if where else OPTION_OF_FIELD.get(field, field)

    for field, (low, high) in SIZE_LIMITS.items():
        value = getattr(config, field)
        if not low <= value <= high:
            raise UserError(f"{name(field)} = {value:,} is outside tt's limits {low}..{high:,}")
    if config.d_model % 2:
        raise UserError(f"{name('d_model')} = {config.d_model} must be an even number")
    if config.d_model % config.n_heads:
        heads = f"n_heads = {config.n_heads}" if where else f"{name('n_heads')} {config.n_heads}"
        raise UserError(f"{name('d_model')} = {config.d_model} is not divisible by {heads}")
    if not 0 <= config.dropout < 1:
        raise UserError(f"{name('dropout')} must be in [0, 1)")
    if config.tie_embeddings and config.src_vocab_size != config.tgt_vocab_size:
        raise UserError(f"{name('tie_embeddings')}: tied embeddings need equal source and target vocabularies")
    if config.activation not in ACTIVATION_NAMES:
        raise UserError(f"{name('activation')} must be one of {', '.join(ACTIVATION_NAMES)}, not {config.activation!r}")
    for field in ("pad_id", "start_id", "eos_id"):
        if not 0 <= getattr(config, field) < min(config.src_vocab_size, config.tgt_vocab_size):
            raise UserError(f"{name(field)} = {getattr(config, field)} is not an id of the vocabulary")
    if estimated_parameters(config) > MAX_PARAMETERS:
        raise UserError(f"{where or 'the model'}: a model of about {estimated_parameters(config):,} parameters is over tt's limit of {MAX_PARAMETERS:,}")


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be between 0 and {MAX_SEED}")
