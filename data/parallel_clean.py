"""Cleaning on all cores: corpus files → the kept pairs, in corpus order, exactly as one core does it.

    main process                       worker processes (one per core)
    raw lines, ~1 MB a block  ──────▶  decode, parse (file:line), normalize, rules 1-3,
                                       pair_key, the DevPicker's score of the source
    Sieve: duplicates, dev     ◀──────  Screened runs, returned in the order sent
    pairs, the report; the caller writes, picks dev pairs, samples for the tokenizer

Everything a worker does depends on one pair alone; everything that depends on the pairs
before (de-duplication, the report, the dev pick, the tokenizer sample) stays in the main
process and sees the runs in corpus order, through the same `Sieve` as the one-core path.
So the kept pairs, the report and the errors are the same either way: a worker that meets
a bad line returns what it read before it and the message, and the main process raises that
message once the lines before it are counted, so the first error in file order wins.

Small corpora stay on one core: starting the workers costs more than it saves below
`PARALLEL_MIN_BYTES`. The workers, and how a pass stops them, are `tt.data.worker_processes`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import partial
from itertools import islice, zip_longest
from typing import Iterator

from tt.data.clean import CleaningConfig, CleaningReport, Screened, Sieve, screen, screened_runs
from tt.data.corpus import (
    CorpusSpec, aligned_mismatch, check_spec, decode_block, jsonl_fields, open_binary, read_pairs, resolve_format,
    tsv_fields,
)
from tt.data.errors import UserError
from tt.data.worker_processes import answers_in_order

PARALLEL_MIN_BYTES = 16 << 20  # smaller corpora are cleaned in this process (measured: below ~10 MB
# the workers' start, ~0.45 s, costs more than they save; tests lower it)
BLOCK_BYTES = 1 << 20  # raw lines per worker task: ~20,000 short pairs


def clean_corpus(
    spec: CorpusSpec,
    config: CleaningConfig,
    report: CleaningReport,
    exclude: list[int] | None = None,
    score_key: bytes | None = None,
    workers: int | None = None,
) -> Iterator[list[tuple[str, str, int | None]]]:
    """The kept pairs as (src, tgt, DevPicker score of src, or None without `score_key`), in
    corpus order, in lists of thousands (a caller handles them in bulk, not one call a pair).

    `report` counts as they go. Close the iterator (or exhaust it) to stop the workers.
    """
    check_spec(spec)
    workers = usable_cores() if workers is None else workers
    if workers < 2 or not _worth_parallel(spec):
        runs = screened_runs(read_pairs(spec), config, score_key)
    else:
        runs = screened_in_parallel(spec, config, score_key, workers)
    yield from Sieve(report, exclude).run_in_chunks(runs)


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _worth_parallel(spec: CorpusSpec) -> bool:
    names = [spec.path] if spec.path else [spec.src_path, spec.tgt_path]
    try:
        for name in names:
            open_binary(name).close()
    except UserError:
        return False  # one core reads it, and fails with the very message it always gave
    return sum(os.path.getsize(name) for name in names) >= PARALLEL_MIN_BYTES


# ---- the main process: blocks out, runs back in order


@dataclass(frozen=True)
class Layout:
    """What a worker needs to know to turn raw lines into (src, tgt, where)."""

    format: str  # tsv | jsonl | text
    names: tuple[str, ...]  # the file, or the source and target files
    src_col: int = 1
    tgt_col: int = 2


def screened_in_parallel(
    spec: CorpusSpec, config: CleaningConfig, score_key: bytes | None, workers: int
) -> Iterator[Screened]:
    """Rules 1-3 on `workers` processes, the runs yielded in corpus order; the workers end with the iterator."""
    screen_here = partial(screen_block, layout_of(spec), config, score_key)
    with contextlib.closing(answers_in_order(blocks(spec), screen_here, workers)) as answers:
        for run, error in answers:
            yield from arrived(run, error)


def arrived(run: Screened, error: str | None) -> Iterator[Screened]:
    """A block's run, then its error: the pairs before the bad line are counted first, as on one core."""
    yield run
    if error is not None:
        raise UserError(error)


def layout_of(spec: CorpusSpec) -> Layout:
    if spec.path is None:
        return Layout("text", (spec.src_path, spec.tgt_path))
    return Layout(resolve_format(spec), (spec.path,), spec.src_col, spec.tgt_col)  # check_spec refused text here


def blocks(spec: CorpusSpec) -> Iterator[tuple[int, bytes, bytes]]:
    """(number of the first line, whole lines of the file or source file, the same lines of the target file)."""
    if spec.path is not None:
        with open_binary(spec.path) as handle:
            first = 1
            while lines := handle.readlines(BLOCK_BYTES):
                yield first, b"".join(lines), b""
                first += len(lines)
        return
    with open_binary(spec.src_path) as src, open_binary(spec.tgt_path) as tgt:
        first = 1
        while True:
            src_lines = src.readlines(BLOCK_BYTES)
            tgt_lines = list(islice(tgt, max(len(src_lines), 1)))
            if len(tgt_lines) < len(src_lines):
                # The target file has ended: the worker reads one source line past its end
                # (as the one-core reader does) and reports the files' different lengths.
                del src_lines[len(tgt_lines) + 1 :]
            if not src_lines and not tgt_lines:
                return
            yield first, b"".join(src_lines), b"".join(tgt_lines)
            if len(src_lines) != len(tgt_lines):
                return
            first += len(src_lines)


# ---- what a worker process does


def screen_block(
    layout: Layout, config: CleaningConfig, score_key: bytes | None, block: tuple[int, bytes, bytes]
) -> tuple[Screened, str | None]:
    """One block's run through rules 1-3, and the message of its first bad line (None when all are good)."""
    rows, error = [], None
    try:
        for row in _rows(layout, *block):
            rows.append(row)
    except UserError as err:
        error = str(err)  # a plain string crosses back to the main process whatever it holds
    return screen(rows, config, score_key), error


def _rows(layout: Layout, first: int, block: bytes, tgt_block: bytes) -> Iterator[tuple[str, str, str]]:
    """(src, tgt, "file:line") of each line, read exactly as `tt.data.corpus.read_pairs` reads it."""
    name = layout.names[0]
    if layout.format == "text":
        src_name, tgt_name = layout.names
        sides = zip_longest(decode_block(src_name, first, block), decode_block(tgt_name, first, tgt_block))
        for number, (src, tgt) in enumerate(sides, first):
            if src is None:
                raise aligned_mismatch(src_name, tgt_name, number - 1)
            if tgt is None:
                raise aligned_mismatch(tgt_name, src_name, number - 1)
            yield src, tgt, f"{src_name}:{number}"
    elif layout.format == "jsonl":
        for number, line in enumerate(decode_block(name, first, block), first):
            fields = jsonl_fields(name, number, line)
            if fields is not None:
                yield fields[0], fields[1], f"{name}:{number}"
    else:
        for number, line in enumerate(decode_block(name, first, block), first):
            src, tgt = tsv_fields(name, number, line, layout.src_col, layout.tgt_col)
            yield src, tgt, f"{name}:{number}"
