"""Read parallel text: files on disk → a stream of `Pair(src, tgt, where)`.

Three layouts are understood:
- TSV: one pair per line, the source and target in chosen columns (1-based);
- JSONL: one object per line, `{"src": ..., "tgt": ...}`;
- a Moses-style pair of aligned plain-text files, line n of one translating line n of the other.

Files are streamed line by line, so a corpus larger than memory can be read. Every pair
carries `where` ("file:line") so that later steps can point at the line that upset them.
Text is returned exactly as written (apart from a UTF-8 byte-order mark and line ends);
`tt.data.normalize` is applied later, in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO, Iterator

from tt.data.errors import UserError

FORMATS = ("tsv", "jsonl", "text")


@dataclass(frozen=True)
class Pair:
    src: str
    tgt: str
    where: str  # "file:line", for error messages


@dataclass
class CorpusSpec:
    """Where a parallel corpus lives and how to read it (recorded in config.json for --resume)."""

    path: str | None = None  # one TSV or JSONL file
    src_path: str | None = None  # or a Moses-style pair of aligned files
    tgt_path: str | None = None
    format: str | None = None  # tsv | jsonl | text; None = follow the extension
    src_col: int = 1  # TSV columns, 1-based
    tgt_col: int = 2

    def describe(self) -> str:
        if self.path:
            return self.path
        return f"{self.src_path} + {self.tgt_path}"


def resolve_format(spec: CorpusSpec) -> str:
    if spec.format is not None:
        if spec.format not in FORMATS:
            raise UserError(f"unknown --format {spec.format!r}: expected one of {', '.join(FORMATS)}")
        return spec.format
    if spec.path is None:
        return "text"
    suffix = Path(spec.path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".tab", ".txt", ".csv") or suffix == "":
        return "tsv"
    raise UserError(
        f"{spec.path}: cannot tell the format from the extension {suffix!r}; "
        "pass --format tsv or --format jsonl"
    )


def check_spec(spec: CorpusSpec, dev: bool = False) -> None:
    """Fail early, before anything is written, on a spec that cannot be read. `dev`: the spec
    came from --dev/--dev-src/--dev-tgt, which the messages then name."""
    src, tgt, whole = ("--dev-src", "--dev-tgt", "--dev") if dev else ("--src", "--tgt", "a corpus file")
    if spec.path and (spec.src_path or spec.tgt_path):
        raise UserError(f"give either {whole} or {src}/{tgt}, not both")
    if not spec.path and not (spec.src_path and spec.tgt_path):
        raise UserError(f"a pair of aligned files needs both {src} and {tgt}")
    if spec.src_col < 1 or spec.tgt_col < 1:
        raise UserError("--src-col and --tgt-col count from 1")
    for name in (spec.path, spec.src_path, spec.tgt_path):
        if name is None:
            continue
        path = Path(name)
        if not path.exists():
            raise UserError(f"{name}: no such file")
        if path.is_dir():
            raise UserError(f"{name}: is a folder, not a file")
        if not path.is_file():  # a pipe would be used up by the first of the two reads
            raise UserError(f"{name}: a pipe or a device, not a file; tt reads a corpus twice (its SHA-256, then its pairs): save it to a file first")
        compression = compressed_as(path)
        if compression:
            raise UserError(f"{name}:1: a {compression}-compressed file; tt reads plain UTF-8 text, so decompress it first")
    if spec.path and spec.src_col == spec.tgt_col and resolve_format(spec) == "tsv":
        raise UserError(f"--src-col and --tgt-col are both {spec.src_col}")
    resolve_format(spec)
    if spec.path and resolve_format(spec) == "text":
        raise UserError("--format text needs a pair of files: --src FILE --tgt FILE")


COMPRESSED = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd", b"PK\x03\x04": "zip"}


def compressed_as(path: Path) -> str | None:
    """The compression a file's first bytes announce (its magic number), else None."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(6)
    except OSError:
        return None  # reading it later says what is wrong
    return next((name for magic, name in COMPRESSED.items() if start.startswith(magic)), None)


def read_pairs(spec: CorpusSpec) -> Iterator[Pair]:
    """Stream the pairs of a corpus, raising UserError at the first unreadable line."""
    check_spec(spec)
    fmt = resolve_format(spec)
    if spec.path is None:
        yield from _read_aligned(spec.src_path, spec.tgt_path)
    elif fmt == "jsonl":
        yield from _read_jsonl(spec.path)
    else:  # tsv: check_spec refused --format text for one file
        yield from _read_tsv(spec.path, spec.src_col, spec.tgt_col)


def open_binary(name: str | Path) -> BinaryIO:
    """A file opened for reading bytes, or a UserError that says why it cannot be."""
    try:
        return open(name, "rb")
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{name}: is a folder, not a file") from None
    except OSError as err:
        raise UserError(f"{name}: cannot read ({err.strerror})") from None


def read_bytes(name: str | Path) -> bytes:
    """A whole (small) file's bytes, or a UserError that says why they cannot be read."""
    with open_binary(name) as handle:
        return handle.read()


def decode_line(name: str, number: int, raw: bytes) -> str:
    """One line's text: UTF-8, without its line end, and without a byte-order mark on line 1."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{name}:{number}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
        ) from None
    if number == 1:
        text = text.removeprefix("\ufeff")
    return text.rstrip("\r\n")


def read_lines(name: str) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a UTF-8 file, without the line end or a BOM."""
    with open_binary(name) as handle:
        for number, raw in enumerate(handle, start=1):
            yield number, decode_line(name, number, raw)


def decode_block(name: str, first: int, block: bytes) -> Iterator[str]:
    """The texts of whole lines read in one go (the first is line `first`), as `read_lines` gives them.

    The block is decoded at once, which is several times faster than line by line; only
    when that fails is it decoded again line by line, lazily, so that whatever fails on an
    earlier line (a missing column, say) is still reported first.
    """
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        yield from (decode_line(name, number, raw) for number, raw in enumerate(_whole_lines(block, b"\n"), first))
        return
    lines = _whole_lines(text, "\n")
    if first == 1 and lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    yield from (line.rstrip("\r") for line in lines)  # "\n" is gone already


def _whole_lines(block, line_end):
    """`block` cut at its line ends; a final line end does not start another line."""
    lines = block.split(line_end)
    if not lines[-1]:
        lines.pop()
    return lines


def tsv_fields(name: str, number: int, line: str, src_col: int, tgt_col: int) -> tuple[str, str]:
    """(source, target) of one TSV line; a blank line is a pair with two empty sides."""
    if not line.strip():
        # A blank line is a pair with two empty sides: cleaning drops and counts it.
        return "", ""
    fields = line.split("\t")
    if len(fields) < max(src_col, tgt_col):
        raise UserError(
            f"{name}:{number}: expected at least {max(src_col, tgt_col)} tab-separated fields "
            f"(--src-col {src_col}, --tgt-col {tgt_col}), found {len(fields)}"
        )
    return fields[src_col - 1], fields[tgt_col - 1]


def jsonl_fields(name: str, number: int, line: str) -> tuple[str, str] | None:
    """(source, target) of one JSONL line; None for a blank line, which is skipped."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{name}:{number}: invalid JSON ({err.msg} at column {err.colno})") from None
    except (ValueError, RecursionError) as err:  # a 5,000-digit number, arrays nested 1,000 deep
        raise UserError(f"{name}:{number}: invalid JSON ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(record, dict):
        raise UserError(f"{name}:{number}: expected a JSON object with \"src\" and \"tgt\"")
    for key in ("src", "tgt"):
        if key not in record:
            raise UserError(f"{name}:{number}: missing key \"{key}\"")
        if not isinstance(record[key], str):
            raise UserError(f"{name}:{number}: \"{key}\" must be a string")
    return record["src"], record["tgt"]


def aligned_mismatch(short: str, long_: str, last: int) -> UserError:
    """The error for aligned files where `short` ends after `last` lines and `long_` goes on."""
    return UserError(
        f"{short}:{last + 1}: file ends after {last} lines but {long_} goes on "
        "(the two files must be aligned line by line)"
    )


def _read_tsv(name: str, src_col: int, tgt_col: int) -> Iterator[Pair]:
    for number, line in read_lines(name):
        yield Pair(*tsv_fields(name, number, line, src_col, tgt_col), f"{name}:{number}")


def _read_jsonl(name: str) -> Iterator[Pair]:
    for number, line in read_lines(name):
        fields = jsonl_fields(name, number, line)
        if fields is not None:
            yield Pair(*fields, f"{name}:{number}")


def _read_aligned(src_name: str, tgt_name: str) -> Iterator[Pair]:
    src_lines = read_lines(src_name)
    tgt_lines = read_lines(tgt_name)
    last = 0
    for src_item, tgt_item in zip_longest(src_lines, tgt_lines):
        if src_item is None:
            raise aligned_mismatch(src_name, tgt_name, last)
        if tgt_item is None:
            raise aligned_mismatch(tgt_name, src_name, last)
        last = src_item[0]
        yield Pair(src_item[1], tgt_item[1], f"{src_name}:{last}")
