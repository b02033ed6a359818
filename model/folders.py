"""Any model tt can open: its own folder, a Hugging Face Marian folder, or a model id in the
local Hugging Face cache. Every command that takes --model comes through here.

A model id (`Helsinki-NLP/opus-mt-zh-en`) is looked up on disk only, where `huggingface-cli
download` puts it: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub, then
models--Helsinki-NLP--opus-mt-zh-en/snapshots/<revision>/. tt never opens a network connection.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from typing import TYPE_CHECKING

from tt.data.errors import UserError

if TYPE_CHECKING:
    from tt.data.tokenizer import Tokenizer
    from tt.model.transformer import Transformer

MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def resolve_model(path: Path) -> Path:
    """A folder as given, or the cached snapshot of a model id."""
    if path.exists() or not MODEL_ID.fullmatch(str(path)):
        return path
    snapshot = cached_snapshot(str(path))
    if snapshot is None:
        raise UserError(
            f"{path}: no such folder, and no such model in the Hugging Face cache ({hub_cache()}); tt never downloads: "
            f"get it once with `huggingface-cli download {path}` (or `hf download {path}`)"
        )
    return snapshot


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def cached_snapshot(model_id: str) -> Path | None:
    """The snapshot refs/main points at, else the newest one downloaded."""
    repo = hub_cache() / ("models--" + model_id.replace("/", "--"))
    main = repo / "refs" / "main"
    if main.is_file():
        snapshot = repo / "snapshots" / main.read_text(encoding="utf-8", errors="replace").strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime) if (repo / "snapshots").is_dir() else []
    return snapshots[-1] if snapshots else None


def open_model(folder: Path) -> tuple[Transformer, Tokenizer, dict]:
    """The model in eval mode, its tokenizer, and what the folder records about it."""
    # Imported here: finding a folder (resolve_model) must not load torch, which the quick
    # path of `tt translate` (tt.model.numpy_model) does without.
    from tt.model.checkpoint import load_model_folder
    from tt.model.marian_folder import is_marian_folder, load_marian_folder

    if is_marian_folder(folder):
        return load_marian_folder(folder)
    return load_model_folder(folder)


def open_tokenizer(folder: Path) -> Tokenizer:
    """Only the tokenizer (`tt tokenize`): no weights read."""
    from tt.data.tokenizer import Tokenizer
    from tt.model.marian_folder import is_marian_folder, read_marian_tokenizer

    if is_marian_folder(folder):
        return read_marian_tokenizer(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such model folder (train one with `tt train`, or pass --model)")
    return Tokenizer.load(folder)
