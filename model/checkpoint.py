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

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model
from safetensors.torch import save as safetensors_bytes

from tt.data.atomic import write_atomic
from tt.data.errors import UserError
from tt.data.tokenizer import Tokenizer
from tt.model.model_record import CONFIG, WEIGHTS, check_weights_header, read_model_record, weights_digest
from tt.model.transformer import Transformer, tied_names

STATE_TENSORS = "train_state.safetensors"
METRICS = "metrics.jsonl"
# A new run's metrics until its first checkpoint: then renamed to metrics.jsonl, so a run
# replacing another (--overwrite) leaves the old one whole until there is something new.
PENDING_METRICS = ".metrics.jsonl.pending"
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.src.model", "tokenizer.tgt.model")
RUN_FILES = (WEIGHTS, CONFIG, METRICS, STATE_TENSORS, *TOKENIZER_FILES)


def write_json(path: Path, record: dict) -> None:
    write_atomic(path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())


# ---- weights: model.safetensors


def model_digest(model: torch.nn.Module) -> str:
    """The checksum of a model's weights (tt.model.model_record.weights_digest)."""
    return weights_digest(
        (name, tuple(tensor.shape), str(tensor.dtype), tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
        for name, tensor in model.state_dict().items()
    )


def save_weights(path: Path, model: torch.nn.Module) -> None:
    tensors = {name: cpu(tensor) for name, tensor in stored_tensors(model).items()}
    write_safetensors(path, tensors, {"tt.sha256": model_digest(model)})


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Serialize in memory, then write through `atomic_path`.

    safetensors' own save_file writes via a temporary file of its own, which a kill would
    leave behind under a random name, and reports a full disk as a SafetensorError rather
    than an OSError; writing the bytes ourselves keeps both under our control.
    """
    write_atomic(path, safetensors_bytes(tensors, metadata=metadata))


def save_model_folder(folder: Path, model: Transformer, tokenizer: Tokenizer, record: dict[str, Any]) -> set[str]:
    """Returns the names of the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(folder)
    save_weights(folder / WEIGHTS, model)
    write_json(folder / CONFIG, {**record, "model": asdict(model.config)})
    return {WEIGHTS, CONFIG, *tokenizer.file_names()}


def is_model_folder(folder: Path) -> bool:
    return (folder / CONFIG).exists() or (folder / WEIGHTS).exists()


def load_model_folder(folder: Path) -> tuple[Transformer, Tokenizer, dict]:
    """The model in eval mode, its tokenizer, and the whole config.json record.

    Order matters for safety: the config is checked against the size limits, the tokenizer
    against the config and the file's tensor shapes against the config, all before the
    model's memory is allocated; the weights are then checked against their checksum.
    """
    model_config, tokenizer, record = read_model_record(folder)
    check_weights_header(folder / WEIGHTS, model_config)
    model = Transformer(model_config)
    load_weights(folder / WEIGHTS, model)
    model.eval()
    return model, tokenizer, record


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
    if recorded is not None and recorded != model_digest(model):
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
    for name, tensor in stored_tensors(model).items():
        tensors[f"model.{name}"] = cpu(tensor)
    optim = optimizer.state_dict()
    for index, per_param in optim["state"].items():
        for key, value in per_param.items():
            tensors[f"optimizer.{index}.{key}"] = cpu(value.reshape(-1) if value.dim() == 0 else value)
    header = json.dumps({**state, "param_groups": optim["param_groups"]})
    write_safetensors(folder / STATE_TENSORS, tensors, {"tt.state": header})


def cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().cpu()


def stored_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict() with each tied matrix once (safetensors refuses shared storage), under
    its alphabetically first name (project.weight), which is where load_model looks."""
    aliases = {name for names in tied_names(model) for name in names[1:]}
    return {name: tensor for name, tensor in sorted(model.state_dict().items()) if name not in aliases}


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
    except (ValueError, RecursionError):
        state = None
    if not isinstance(state, dict) or "param_groups" not in state:
        raise UserError(f"{path}: no readable training state in its header")
    for key, valid in STATE_FIELDS.items():
        if (key in state or key in REQUIRED_STATE) and not valid(state.get(key)):
            raise UserError(f"{path}: the training state's {key} is {json.dumps(state.get(key))[:40]}, which cannot be right")
    return state, tensors


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# What each field of the training state may hold: a tampered file is refused, not half-used.
STATE_FIELDS = {
    "step": _count, "tokens": _count, "epoch": _count, "position": _count, "evaluations_since_best": _count,
    "elapsed_s": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf"),
    "batch_tokens": lambda v: _count(v) and v >= 1,
    "processes": lambda v: _count(v) and v >= 1,
    "last_dev": lambda v: isinstance(v, dict),
    "best": lambda v: isinstance(v, dict),
    "param_groups": lambda v: isinstance(v, list),
}
REQUIRED_STATE = ("step", "tokens", "epoch", "position", "elapsed_s", "param_groups")


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
    aliases = {name for names in tied_names(model) for name in names[1:]}
    missing = [name for name in missing if name not in aliases]
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
