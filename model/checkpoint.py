"""A model folder on disk: weights, config and tokenizer, safe to load from strangers.

    tt-model/
      model.safetensors          the weights `tt translate` loads
      config.json                model/train/tokenizer configs, corpus, step, summary
      tokenizer.model            SentencePiece (or tokenizer.src.model + tokenizer.tgt.model)
      metrics.jsonl              one line per log interval
      train_state.safetensors    what --resume needs, in one file: the latest weights, Adam's
                                 moments, the RNG, and (as JSON in its header) the step,
                                 data position and scheduler

Only safetensors and JSON: loading never runs code (no pickle, no `torch.load`), and a
config is checked against hard size limits before anything is allocated, so a stranger's
config.json cannot claim d_model = 10⁹ and eat the machine. Every file is written through
`tt.data.atomic` (temporary name, fsync, rename), so a kill or a full disk during a save
leaves the previous file whole; the training state is one file for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from tt.data.atomic import atomic_path, write_atomic
from tt.data.errors import UserError
from tt.data.tokenizer import Tokenizer
from tt.model.transformer import ModelConfig, Transformer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
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
    """Build a dataclass config, refusing unknown keys (a typo must not pass silently) and wrong types."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected an object of {cls.__name__} settings")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"{where}: unknown key {key!r}")
        if not _has_type(value, hints[key]):
            raise UserError(f"{where}: {key} = {json.dumps(value)[:40]} is not a {_type_name(hints[key])}")
    return cls(**values)


def _has_type(value: Any, hint: Any) -> bool:
    allowed = typing.get_args(hint) or (hint,)  # `int | None` → (int, NoneType)
    if isinstance(value, bool):
        return bool in allowed  # JSON true is not a number of layers
    if isinstance(value, int) and float in allowed:
        return True  # 1 is a fine learning rate
    return isinstance(value, tuple(t for t in allowed if isinstance(t, type)))


def _type_name(hint: Any) -> str:
    return " or ".join(getattr(t, "__name__", str(t)).replace("NoneType", "null") for t in (typing.get_args(hint) or (hint,)))


# Hard limits on a model config read from a file, checked before anything is allocated.
# Far above anything tt trains on a laptop, far below what would exhaust a machine.
SIZE_LIMITS = {
    "n_layers": (1, 64), "d_model": (2, 16384), "n_heads": (1, 256), "d_ff": (1, 65536),
    "src_vocab_size": (4, 1_048_576), "tgt_vocab_size": (4, 1_048_576), "max_positions": (2, 65536),
}
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32


def estimated_parameters(config: ModelConfig) -> int:
    """Parameter count from the config alone (within a few percent: biases and norms are left out)."""
    d, layers = config.d_model, config.n_layers
    embeddings = (config.src_vocab_size + 2 * config.tgt_vocab_size) * d
    per_layer = 4 * d * d + 2 * d * config.d_ff  # self-attention + feed-forward
    return embeddings + layers * per_layer + layers * (per_layer + 4 * d * d)  # decoder adds cross-attention


def check_model_config(config: ModelConfig, where: str) -> None:
    for name, (low, high) in SIZE_LIMITS.items():
        value = getattr(config, name)
        if not low <= value <= high:
            raise UserError(f"{where}: {name} = {value} is outside the supported range {low}..{high:,}")
    if config.d_model % config.n_heads or config.d_model % 2:
        raise UserError(f"{where}: d_model {config.d_model} must be even and divisible by n_heads {config.n_heads}")
    for name in ("dropout", "attention_dropout"):
        if not 0 <= getattr(config, name) < 1:
            raise UserError(f"{where}: {name} must be in [0, 1)")
    if config.tie_embeddings and config.src_vocab_size != config.tgt_vocab_size:
        raise UserError(f"{where}: tie_embeddings needs equal source and target vocabularies")
    if estimated_parameters(config) > MAX_PARAMETERS:
        raise UserError(f"{where}: a model of about {estimated_parameters(config):,} parameters is over tt's limit of {MAX_PARAMETERS:,}")


# ---- one trainer per folder


class FolderLock:
    """An exclusive lock on a model folder while `tt train` writes it (a second run is refused).

    flock(2) locks vanish with the process, so a killed run never leaves a stale lock.
    Where fcntl does not exist (Windows) the lock is skipped.
    """

    NAME = ".lock"

    def __init__(self, folder: Path, enabled: bool = True):
        self.folder, self.handle, self.enabled = folder, None, enabled  # disabled: processes other than rank 0

    def acquire(self) -> None:
        if self.handle is not None or not self.enabled:
            return
        try:
            import fcntl
        except ImportError:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / self.NAME, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise UserError(f"{self.folder}: another tt train (process {owner}) is writing this folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the flock
            self.handle = None


# ---- weights: model.safetensors


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor's name, shape and bytes: catches a damaged or altered file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_weights(path: Path, model: torch.nn.Module) -> None:
    with atomic_path(path) as temporary:
        # save_model handles the tied embedding matrix (stored once, loaded into both names).
        save_model(model, str(temporary), metadata={"tt.sha256": weights_digest(model)})


def save_model_folder(folder: Path, model: Transformer, tokenizer: Tokenizer, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(folder)
    save_weights(folder / WEIGHTS, model)
    write_json(folder / CONFIG, {**record, "model": asdict(model.config)})


def is_model_folder(folder: Path) -> bool:
    return (folder / CONFIG).exists() or (folder / WEIGHTS).exists()


def load_model_folder(folder: Path) -> tuple[Transformer, Tokenizer, dict]:
    """The model in eval mode, its tokenizer, and the whole config.json record.

    Order matters for safety: the config is checked against the size limits, the tokenizer
    against the config and the file's tensor shapes against the config, all before the
    model's memory is allocated; the weights are then checked against their checksum.
    """
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
    check_shapes(folder / WEIGHTS, model_config)
    model = Transformer(model_config)
    load_weights(folder / WEIGHTS, model)
    model.eval()
    return model, tokenizer, record


def check_shapes(path: Path, config: ModelConfig) -> None:
    """Compare the file's header with the shapes the config implies, without allocating either."""
    with torch.device("meta"):  # shapes only: no memory behind these tensors
        expected = {name: tuple(t.shape) for name, t in Transformer(config).state_dict().items()}
    try:
        with safe_open(str(path), "pt") as handle:
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None
    for name, shape in found.items():
        if name not in expected:
            raise UserError(f"{path}: tensor {name!r} is not part of the model config.json describes")
        if expected[name] != shape:
            raise UserError(f"{path}: tensor {name} has shape {list(shape)}, config.json implies {list(expected[name])}")


def load_weights(path: Path, model: torch.nn.Module) -> None:
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
        with safe_open(str(path), "pt") as handle:
            recorded = (handle.metadata() or {}).get("tt.sha256")
    except (SafetensorError, OSError, RuntimeError) as err:
        raise UserError(f"{path}: cannot load weights ({err})") from None
    if missing or unexpected:
        names = ", ".join(sorted(missing) + sorted(unexpected))[:200]
        raise UserError(f"{path}: weights do not match config.json (tensors {names})")
    if recorded is not None and recorded != weights_digest(model):
        raise UserError(f"{path}: the weights do not match their checksum: the file is damaged or was altered")


# ---- training state: what --resume needs beyond the weights, in one file


def save_training_state(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, rng: dict[str, torch.Tensor]
) -> None:
    """Latest weights, Adam's moments and the RNG states as tensors; the rest as JSON in the header.

    One file, written atomically: a kill at any moment leaves either the previous state or
    the new one, never the tensors of one step with the data position of another.
    `rng`: "rng.torch" is process 0's generator; data-parallel runs add "rng.torch.1", ….
    """
    tensors: dict[str, torch.Tensor] = dict(rng)
    for name, tensor in model.state_dict().items():
        tensors[f"model.{name}"] = tensor.detach().contiguous().cpu()
    optim = optimizer.state_dict()
    for index, per_param in optim["state"].items():
        for key, value in per_param.items():
            tensors[f"optimizer.{index}.{key}"] = (value.detach().reshape(-1) if value.dim() == 0 else value).cpu()
    # A tied embedding appears under two names in state_dict(); safetensors wants one copy.
    tensors = _dedupe(tensors)
    header = json.dumps({**state, "param_groups": optim["param_groups"]})
    with atomic_path(folder / STATE_TENSORS) as temporary:
        save_file(tensors, str(temporary), metadata={"tt.state": header})


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


def read_training_state(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The JSON state and the tensors of train_state.safetensors."""
    path = folder / STATE_TENSORS
    try:
        with safe_open(str(path), "pt") as handle:
            header = (handle.metadata() or {}).get("tt.state")
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: cannot load the training state ({err})") from None
    try:
        state = json.loads(header) if header else None
    except json.JSONDecodeError:
        state = None
    if not isinstance(state, dict) or "step" not in state or "param_groups" not in state:
        raise UserError(f"{path}: no readable training state in its header")
    return state, tensors


def load_training_state(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Weights and optimizer restored in place; returns the JSON state and the RNG states."""
    state, tensors = read_training_state(folder)
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError:  # a shape differs
        missing, unexpected = ["?"], []
    missing = [name for name in missing if name not in ("project.weight", "tgt_embed.weight")]
    if missing or unexpected or "rng.torch" not in tensors:
        raise UserError(f"{folder / STATE_TENSORS}: training state does not match the model")
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = tensor.reshape(()) if key == "step" else tensor
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    except (ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"{folder / STATE_TENSORS}: optimizer state does not match the model ({err})") from None
    return state, {name: tensor for name, tensor in tensors.items() if name.startswith("rng.")}
