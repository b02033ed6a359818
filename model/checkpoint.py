"""A model folder on disk: weights, config and tokenizer, safe to load from strangers.

    tt-model/
      model.safetensors          the weights `tt translate` loads
      config.json                model/train/tokenizer configs, corpus, step, summary
      tokenizer.model            SentencePiece (or tokenizer.src.model + tokenizer.tgt.model)
      metrics.jsonl              one line per log interval
      train_state.json           step, data position, scheduler: what --resume needs …
      train_state.safetensors    … with the latest weights, Adam's moments and the RNG

Only safetensors and JSON: loading never runs code (no pickle, no `torch.load`). Every file
is written under a temporary name and renamed into place, so an interrupted save leaves the
previous file whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from tt.data.errors import UserError
from tt.data.tokenizer import Tokenizer, replace_atomic, write_atomic
from tt.model.transformer import ModelConfig, Transformer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE_JSON = "train_state.json"
STATE_TENSORS = "train_state.safetensors"
METRICS = "metrics.jsonl"

Config = TypeVar("Config")


def write_json(path: Path, record: dict) -> None:
    write_atomic(path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: expected a JSON object")
    return record


def config_from_dict(cls: type[Config], values: dict, where: str) -> Config:
    """Build a dataclass config, refusing keys it does not know (a typo must not pass silently)."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected an object of {cls.__name__} settings")
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise UserError(f"{where}: unknown key {key!r}")
    return cls(**values)


def save_weights(path: Path, model: torch.nn.Module) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_model(model, str(temporary))  # save_model handles the tied embedding matrix
    replace_atomic(temporary, path)


def save_model_folder(folder: Path, model: Transformer, tokenizer: Tokenizer, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(folder)
    save_weights(folder / WEIGHTS, model)
    write_json(folder / CONFIG, {**record, "model": asdict(model.config)})


def is_model_folder(folder: Path) -> bool:
    return (folder / CONFIG).exists() or (folder / WEIGHTS).exists()


def load_model_folder(folder: Path) -> tuple[Transformer, Tokenizer, dict]:
    """The model in eval mode, its tokenizer, and the whole config.json record."""
    if not folder.exists():
        raise UserError(f"{folder}: no such model folder (train one with `tt train`, or pass --model)")
    if not (folder / WEIGHTS).exists():
        raise UserError(f"{folder}: no {WEIGHTS} here; is this a tt model folder?")
    record = read_json(folder / CONFIG)
    model_config = config_from_dict(ModelConfig, record.get("model"), f"{folder / CONFIG}: model")
    tokenizer = Tokenizer.load(folder)
    model = Transformer(model_config)
    load_weights(folder / WEIGHTS, model)
    model.eval()
    return model, tokenizer, record


def load_weights(path: Path, model: torch.nn.Module) -> None:
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise UserError(f"{path}: cannot load weights ({err})") from None
    if missing or unexpected:
        names = ", ".join(sorted(missing) + sorted(unexpected))[:200]
        raise UserError(f"{path}: weights do not match config.json (tensors {names})")


# ---- training state: what --resume needs beyond the weights


def save_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Latest weights, Adam's moments, torch's RNG (safetensors) and the rest (JSON)."""
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    for name, tensor in model.state_dict().items():
        tensors[f"model.{name}"] = tensor.contiguous()
    optim = optimizer.state_dict()
    for index, per_param in optim["state"].items():
        for key, value in per_param.items():
            tensors[f"optimizer.{index}.{key}"] = value.detach().reshape(-1) if value.dim() == 0 else value
    # A tied embedding appears under two names in state_dict(); safetensors wants one copy.
    tensors = _dedupe(tensors)
    temporary = folder / f".{STATE_TENSORS}.tmp-{os.getpid()}"
    save_file(tensors, str(temporary))
    replace_atomic(temporary, folder / STATE_TENSORS)
    write_json(folder / STATE_JSON, {**state, "param_groups": optim["param_groups"]})


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    seen: dict[int, str] = {}
    out = {}
    for name, tensor in tensors.items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel() > 0:
            continue
        seen[key] = name
        out[name] = tensor
    return out


def load_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    state = read_json(folder / STATE_JSON)
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
    except (SafetensorError, OSError, FileNotFoundError) as err:
        raise UserError(f"{folder / STATE_TENSORS}: cannot load the training state ({err})") from None
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [name for name in missing if name not in ("project.weight", "tgt_embed.weight")]
    if missing or unexpected:
        raise UserError(f"{folder / STATE_TENSORS}: training state does not match the model")
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = tensor.reshape(()) if key == "step" else tensor
    optimizer.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    return state
