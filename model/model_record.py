"""What a tt model folder says about its model, read without torch: config.json and the tokenizer.

Both weight loaders start here: tt.model.checkpoint (PyTorch, every command) and
tt.model.numpy_model (the quick path of `tt translate`). Everything is checked before a
single weight is read: the config against tt's size limits, the tokenizer against the config.
"""

from __future__ import annotations

import json
from pathlib import Path

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
        raise UserError(f"{folder}: not a folder (--model takes the folder `tt train` wrote)")
    if not (folder / WEIGHTS).exists():
        raise UserError(f"{folder}: no {WEIGHTS} here; is this a tt model folder?")
    record = read_json(folder / CONFIG)
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
