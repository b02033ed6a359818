"""A training run's life in its folder: one trainer at a time, and the hand-over when a
new run (--overwrite) replaces an old one.

The file formats themselves live in `tt.model.checkpoint`; this module decides when which
files may be written or removed.
"""

from __future__ import annotations

import os
from pathlib import Path

from tt.data.errors import UserError
from tt.model.checkpoint import METRICS, PENDING_METRICS, RUN_FILES


class FolderLock:
    """An exclusive lock on a model folder while `tt train` writes it (a second run is refused).

    flock(2) locks vanish with the process, so a killed run never leaves a stale lock.
    Where fcntl does not exist (Windows) the lock is skipped.
    """

    NAME = ".lock"

    def __init__(self, folder: Path, enabled: bool = True):
        self.folder, self.handle, self.enabled = folder, None, enabled  # disabled: processes other than rank 0
        self.created_folder = False

    def acquire(self) -> None:
        if self.handle is not None or not self.enabled:
            return
        try:
            import fcntl
        except ImportError:
            return
        self.created_folder = not self.folder.exists()
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

    def held_elsewhere(self) -> str | None:
        """The process id of another tt train holding this folder's lock, without taking it; else None."""
        try:
            import fcntl

            handle = open(self.folder / self.NAME)
        except (ImportError, OSError):
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read().strip() or "?"
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is None:
            return
        # A run that failed before its first checkpoint leaves no folder behind it.
        if self.created_folder and {p.name for p in self.folder.iterdir()} <= {self.NAME}:
            (self.folder / self.NAME).unlink(missing_ok=True)
            self.folder.rmdir()
        self.handle.close()  # closing releases the flock
        self.handle = None


def retire_previous_run(folder: Path, written: set[str]) -> None:
    """After a new run's first checkpoint: the files of the run it replaces go.

    Until then (--overwrite) the old model stayed whole, so a new run that fails early
    loses nothing. The new metrics take the old ones' place.
    """
    pending = folder / PENDING_METRICS
    if pending.exists():
        os.replace(pending, folder / METRICS)
    else:
        (folder / METRICS).unlink(missing_ok=True)
    for name in RUN_FILES:
        if name not in written and name != METRICS:
            (folder / name).unlink(missing_ok=True)
