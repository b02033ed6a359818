"""Writing a file so that no crash, kill or full disk ever leaves half of one.

    write to  .name.tmp-PID     (same folder, so the rename below stays on one file system)
    fsync the temporary file    (its bytes are on the disk, not only in the page cache)
    rename over  name           (atomic: a reader sees the old file or the new, never a mix)
    fsync the folder            (the rename itself survives a power cut)

A failure anywhere before the rename (ENOSPC, EIO, a read-only disk, Ctrl-C) removes the
temporary file and leaves the previous `name` untouched. Disk errors become one
UserError naming the file, so the command line can say what happened in one line.
Every writer of tt's outputs (weights, training state, JSON, tokenizer, translations) comes
through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import Iterator, TextIO

from tt.data.errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new contents to; committed when the block ends.

    A symbolic link stays a link: the file it points to is the one replaced. A file that is
    not a regular one (/dev/null, /dev/stdout, a named pipe) has nothing to replace and is
    written directly: renaming over it would put a plain file in the device's place."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        try:
            yield path
        except OSError as err:
            raise UserError(f"{path}: cannot write ({err.strerror or err})") from None
        return
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        _sync_file(temporary)
        os.chmod(temporary, _permissions(path))
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err}); the previous file, if any, is unchanged") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _permissions(path: Path) -> int:
    """The file's own permissions when it exists (a private file stays private), else the usual
    ones, as a plain open() would give."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def check_output(path: Path, reading: Path | None = None) -> None:
    """Refuse an --output path that cannot be written before the work, not after it; or that is
    the file being read (`reading`), whose text would be lost."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--output {path}: is a folder")
    if reading is not None and path.exists() and reading.exists() and os.path.samefile(path, reading):
        raise UserError(f"--output {path}: is {reading}, which is being read; its text would be lost")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"--output {path}: no folder {folder} to write it in")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--output {path}: the folder {folder} is not writable")


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """A text handle (UTF-8, "\\n" line ends) whose file appears at `path` only when complete."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            yield handle


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A temporary folder to fill with `path`'s files; it takes `path`'s place, whole, when the
    block ends (an existing `path`, which the caller decided may go, is replaced only then)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: no folder {path.parent} to write it in")
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    previous = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir()
        yield temporary
        for file in temporary.rglob("*"):
            if file.is_file():
                _sync_file(file)
        if path.exists():
            os.replace(path, previous)  # a folder cannot be renamed over a non-empty one
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as err:
        if previous.exists() and not path.exists():
            os.replace(previous, path)
        raise UserError(f"{path}: cannot write ({err.strerror or err}); the previous folder, if any, is unchanged") from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def _sync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some file systems (and Windows) cannot open a folder; the rename is done anyway
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # fsync on a folder is not supported everywhere; nothing more we can do
    finally:
        os.close(descriptor)
