"""Token ids on disk: one flat array per side, read row by row.

A side NAME of a prepared corpus is three files (nanoGPT's `train.bin` and fairseq's
indexed datasets work the same way):

    NAME.ids       every row's token ids, one after the other (uint16 when the vocabulary
                   fits, else uint32), each row ending in </s>
    NAME.offsets   int64, where row i starts in NAME.ids (one more entry than rows)
    NAME.lengths   uint16/uint32, row i's length: batches are planned from these alone

Rows are appended in chunks under temporary names (`TokenWriter`); `finish` renames them
into place and returns each file's size and SHA-256 for the manifest. `check_files` checks
both before a byte is used, so a truncated or edited shard is never trained on (with
verify=False, as torchrun's other ranks open a folder rank 0 has just checked, only the
sizes); `open_tokens` then opens them: the lengths are read into memory, the rows
read from disk when a batch needs them (`TokenArray`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tt.data.errors import UserError

SUFFIXES = ("ids", "offsets", "lengths")
HASH_BLOCK = 1 << 24


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def length_dtype(max_chars: int) -> np.dtype:
    # With byte fallback one character is at most 4 pieces (its UTF-8 bytes), plus </s>.
    return np.dtype(np.uint16 if 4 * max_chars + 1 < 1 << 16 else np.uint32)


class TokenArray:
    """Row i's token ids, read from the NAME.ids file when asked; the lengths held in memory.

    Rows are read with `os.pread`, not through a memory map: training reads rows in random
    order, and every page a map touches counts in the process's resident memory (with the
    kernel's read-around, 32 pages per touch), so after a few dozen batches a map of a
    10-million-pair corpus held nearly all its 900 MB. Read this way, the pages stay in
    the kernel's page cache, shared and reclaimable, and the process's memory does not
    grow with the corpus beyond the lengths (2 bytes per row) that batch planning needs.

    `rows` selects a subset of the file's rows, in that order (`select`).
    """

    def __init__(self, ids: _RowFile, offsets: _RowFile, lengths: np.ndarray, rows: np.ndarray | None = None):
        self.ids, self.offsets, self.rows = ids, offsets, rows
        self.dtype = ids.dtype
        self.lengths = lengths if rows is None else lengths[rows]  # what batch planning reads

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> list[int]:
        row = int(index if self.rows is None else self.rows[index])
        start = int(self.offsets.read(row, 1)[0])
        return self.ids.read(start, int(self.lengths[index])).tolist()

    def select(self, rows: np.ndarray) -> "TokenArray":
        """These rows (indices into the files), in this order."""
        assert self.rows is None, "select from the whole array"
        return TokenArray(self.ids, self.offsets, self.lengths, rows)


class _RowFile:
    """A flat array of one dtype in a file, read a slice at a time."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.handle = open(path, "rb", buffering=0)  # closed with this object

    def read(self, start: int, count: int) -> np.ndarray:
        size = self.dtype.itemsize
        data = os.pread(self.handle.fileno(), count * size, start * size)
        if len(data) != count * size:  # the file shrank after it was checked
            raise UserError(f"{self.path}: shorter than its manifest says (changed while in use?); prepare the corpus again")
        return np.frombuffer(data, dtype=self.dtype)


class TokenWriter:
    """Appends encoded rows to the three files of one side, under temporary names."""

    def __init__(self, folder: Path, name: str, dtype: np.dtype, lengths_dtype: np.dtype):
        self.folder, self.name = folder, name
        self.dtype, self.lengths_dtype = np.dtype(dtype), np.dtype(lengths_dtype)
        self.temporary = {suffix: folder / f".{name}.{suffix}.tmp-{os.getpid()}" for suffix in SUFFIXES}
        self.handles = {suffix: open(path, "wb") for suffix, path in self.temporary.items()}
        self.digests = {suffix: hashlib.sha256() for suffix in SUFFIXES}
        self.sizes = dict.fromkeys(SUFFIXES, 0)
        self.position = 0  # tokens written so far
        self._write("offsets", np.zeros(1, dtype=np.int64))

    def append(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Rows given as all their ids one after the other (each ending in </s>) and their lengths."""
        if not len(lengths):
            return
        self._write("ids", flat.astype(self.dtype, copy=False))
        self._write("offsets", self.position + np.cumsum(lengths, dtype=np.int64))
        self._write("lengths", lengths.astype(self.lengths_dtype, copy=False))
        self.position += len(flat)

    def _write(self, suffix: str, array: np.ndarray) -> None:
        data = array.tobytes()
        self.handles[suffix].write(data)
        self.digests[suffix].update(data)
        self.sizes[suffix] += len(data)

    def finish(self) -> dict[str, dict]:
        """Close, fsync and rename into place; returns file name → {"bytes", "sha256"}."""
        files = {}
        for suffix, handle in self.handles.items():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            final = self.folder / f"{self.name}.{suffix}"
            os.replace(self.temporary[suffix], final)
            files[final.name] = {"bytes": self.sizes[suffix], "sha256": self.digests[suffix].hexdigest()}
        return files

    def abandon(self) -> None:
        for suffix, handle in self.handles.items():
            handle.close()
            self.temporary[suffix].unlink(missing_ok=True)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_files(folder: Path, files: dict[str, dict], verify: bool = True) -> str | None:
    """Why the recorded files cannot be used (missing, another size, other bytes), or None."""
    for name, expected in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected["bytes"]:
            return f"{name} has {size:,} bytes, the manifest says {expected['bytes']:,} (truncated or overwritten)"
        if verify and file_digest(path) != expected["sha256"]:
            return f"{name} was changed since it was written (its SHA-256 differs from the manifest's)"
    return None


def open_tokens(folder: Path, name: str, dtype: str, lengths_dtype: str, rows: int) -> TokenArray:
    """Open one side's files (already checked against the manifest by `check_files`)."""
    try:
        ids = _RowFile(folder / f"{name}.ids", np.dtype(dtype))
        offsets = _RowFile(folder / f"{name}.offsets", np.dtype(np.int64))
        lengths = np.fromfile(folder / f"{name}.lengths", dtype=lengths_dtype)
        offsets_count = (folder / f"{name}.offsets").stat().st_size // 8
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"{folder / name}: cannot open the prepared token ids ({err})") from None
    if offsets_count != rows + 1 or len(lengths) != rows:
        raise UserError(f"{folder}: {name}.offsets/{name}.lengths do not hold {rows:,} rows as the manifest says")
    return TokenArray(ids, offsets, lengths)
