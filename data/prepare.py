"""Prepare a corpus once: read → clean → split off dev → tokenize → token ids on disk.

    corpus files ──clean_corpus──▶ cleaned text (temporary) ──encoded_blocks──▶ src/tgt shards
                  (all cores; dedup   + a sample for training      (all cores, SentencePiece
                   by hash, dev         the tokenizer               in blocks of lines)
                   picked by hash)

Two streaming passes, neither holding the corpus in memory: the first normalizes, cleans
and de-duplicates (`tt.data.parallel_clean`), writing the kept pairs to a temporary text
file and keeping a seeded reservoir sample for the tokenizer (a bounded number of pairs);
the second encodes that file block by block on all cores (`tt.data.parallel_encode`) into
the token files of `tt.data.shards`. What does grow with the corpus is de-duplication's
memory: 8 bytes (one hash) per kept pair, in `tt.data.clean.KeySet`. The dev pairs (at
most a few thousand) go to `dev.tsv`, the tokenizer beside them.

A corpus of 16 MB or more is prepared in a process of its own (`tt.data.own_process`):
what preparation allocated and freed would otherwise stay with the process that trains.

`manifest.json` is written last; `tt.data.prepared_folder` reads it back and decides
whether a folder can be reused.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np

from tt.data.atomic import write_atomic
from tt.data.clean import CleaningConfig, CleaningReport, DevPicker, auto_dev_size, clean_pairs, pair_key
from tt.data.corpus import CorpusSpec, check_spec, read_pairs
from tt.data.errors import UserError
from tt.data.parallel_clean import clean_corpus, usable_cores
from tt.data.own_process import run_apart
from tt.data.parallel_encode import encoded_blocks, encoding_for
from tt.data.prepared_folder import (
    DEV_FILE, FORMAT, LOCK, MANIFEST, VERSION, PreparedCorpus, PrepareRequest, changed_data, open_if_valid, options_key, request_key, tokenizer_digests,
)
from tt.data.shards import TokenWriter, file_digest, id_dtype, length_dtype
from tt.data.tokenizer import Tokenizer, measure, train_tokenizer

MEASURE_PAIRS = 5000  # the tokenizer report's sample: the first train pairs
APART_MIN_BYTES = 16 << 20  # larger corpora are prepared in a process of their own (`tt.data.own_process`)


class Progress:
    """What preparation tells its caller (the CLI draws a bar); silent by default."""

    def stage(self, description: str, total: int | None = None) -> None: ...

    def advance(self, pairs: int) -> None: ...

    def note(self, text: str) -> None: ...


def prepare(request: PrepareRequest, folder: Path, progress: Progress | None = None) -> PreparedCorpus:
    """The prepared corpus in `folder`: reused when it matches the request, else (re)built."""
    progress = progress or Progress()
    try:
        check_spec(request.train)
        if request.dev is not None:
            check_spec(request.dev, dev=True)
    except UserError:
        kept = _without_the_sources(request, folder)  # --resume of a run whose corpus has gone
        if kept is None:
            raise
        progress.note(f"{request.train.describe()}: gone; training on {folder}, prepared from the same bytes (SHA-256)")
        return kept
    key = request_key(request)
    if request.same_data_as is not None:  # --resume: checked before the folder is touched
        changed = changed_data(request.same_data_as, key, "this run started")
        if changed is not None:
            raise UserError(f"{request.train.describe()}: {changed}; --resume needs the data the run started with")
    found = open_if_valid(folder, request, key, verify=True)
    if isinstance(found, PreparedCorpus):
        return found
    with _building(folder, progress):
        # Asked again with the lock held: a process we waited for may have just prepared it.
        found = open_if_valid(folder, request, key, verify=True)
        if isinstance(found, PreparedCorpus):
            return found
        if found is not None:
            progress.note(f"{folder}: {found}; preparing again")
        (folder / MANIFEST).unlink(missing_ok=True)  # from here on, the folder is not valid until we finish
        for stale in folder.glob(".*.tmp-*"):  # a killed preparation's leftovers
            stale.unlink(missing_ok=True)
        try:
            if _large(key):  # training then starts on a clean heap; small corpora skip the new process's start
                tokenizer_files = request.tokenizer.to_files() if request.tokenizer else None
                run_apart(_build_apart, (_with(request, None), tokenizer_files, key, folder), progress)
            else:
                _build(request, key, folder, progress)
                _give_back_freed_memory()
        except OSError as err:  # a full disk, mostly; _building removes what this attempt wrote
            raise UserError(f"{folder}: cannot write the prepared data ({err.strerror or err})") from None
        found = open_if_valid(folder, request, key, verify=False)  # a trained tokenizer: read back from the folder
        if not isinstance(found, PreparedCorpus):
            raise UserError(f"{folder}: {found or 'no manifest'} right after preparing")
        found.reused = False
        return found


def _without_the_sources(request: PrepareRequest, folder: Path) -> PreparedCorpus | None:
    """--resume where the corpus was moved or deleted: the prepared folder, if it was made from
    the bytes the run recorded and its own files are whole; else None."""
    if request.same_data_as is None:
        return None
    key = {**request.same_data_as, **options_key(request)}  # request_key, with the recorded bytes for the sources'
    found = open_if_valid(folder, request, key, verify=True)
    return found if isinstance(found, PreparedCorpus) else None


# ---- building


@contextlib.contextmanager
def _building(folder: Path, progress: Progress) -> Iterator[None]:
    """Hold the folder's lock while preparing; on failure leave no file of this attempt.

    Until the lock is ours, nothing in the folder is: a process stopped while it waits
    (Ctrl-C) leaves the other one's work alone."""
    try:
        folder.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as err:
        raise UserError(f"{folder}: cannot create the folder for prepared data ({err.strerror or err})") from None
    lock = open(folder / LOCK, "a")
    try:
        _lock(lock, folder, progress)
    except BaseException:
        lock.close()
        raise
    try:
        yield
    except BaseException:
        for ours in folder.glob(".*.tmp-*"):  # the lock held: ours, or a killed preparation's
            ours.unlink(missing_ok=True)
        if created:
            lock.close()
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.close()
        with contextlib.suppress(OSError):
            if created and folder.exists() and [p.name for p in folder.iterdir()] == [LOCK]:
                shutil.rmtree(folder, ignore_errors=True)


def _lock(lock, folder: Path, progress: Progress) -> None:
    """The folder's lock, waiting (and saying so) while another process prepares there."""
    try:
        import fcntl
    except ImportError:
        return  # no flock (Windows): one preparing process at a time is then the user's care
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        progress.note(f"{folder}: another process is preparing it; waiting for it to finish")
        fcntl.flock(lock, fcntl.LOCK_EX)


def _large(key: dict) -> bool:
    return sum(file["bytes"] for file in key["train"]["files"]) >= APART_MIN_BYTES


def _build_apart(
    request: PrepareRequest, tokenizer_files: dict[str, bytes] | None, key: dict, folder: Path, progress: Progress,
) -> None:
    """`_build` in the preparing process: the tokenizer crosses to it as its files' bytes."""
    if tokenizer_files is not None:
        request = _with(request, Tokenizer.from_files(tokenizer_files))
    _build(request, key, folder, progress)


def _build(request: PrepareRequest, key: dict, folder: Path, progress: Progress) -> None:
    """Build the folder's files, the lock held (`_building`); the manifest last."""
    exclude, dev_pairs = _read_dev(request.dev)
    cleaned = folder / f".cleaned.tsv.tmp-{os.getpid()}"
    report = CleaningReport()
    capacity = 0 if request.dev else (1000 if request.dev_size is None else request.dev_size)
    picker = DevPicker(capacity, request.seed)
    sample = Reservoir(request.tokenizer_config.sample_sentences, request.seed)
    progress.stage(f"cleaning {request.train.describe()}")
    reported = 0
    chunks = clean_corpus(request.train, request.cleaning, report, exclude, score_key=picker.key)
    with open(cleaned, "w", encoding="utf-8", newline="\n") as handle, contextlib.closing(chunks):
        for kept in chunks:  # lists of (src, tgt, dev score), cleaned on all cores for a large corpus
            handle.write("".join(f"{src}\t{tgt}\n" for src, tgt, _ in kept))
            picker.offer_many(kept)
            if request.tokenizer is None:
                sample.offer_many(kept)
            progress.advance(report.read - reported)
            reported = report.read
    if not report.kept:
        raise UserError(
            f"{request.train.describe()}: no usable pairs (read {report.read}, {report.read - report.kept} dropped by cleaning)"
        )
    dev_size = auto_dev_size(report.kept) if request.dev_size is None else request.dev_size
    if not request.dev and picker.takes_everything(dev_size):  # said before a tokenizer is trained on nothing
        raise UserError(f"--dev-size {dev_size} leaves no pairs to train on")
    dev = dev_pairs if request.dev else picker.pick(dev_size)
    held_out = set() if request.dev else {src for src, _ in dev}

    tokenizer, tokenizer_report = request.tokenizer, None
    if tokenizer is None:
        progress.stage("training the SentencePiece tokenizer")
        train_sample = [(src, tgt) for src, tgt, _ in sample.items if src not in held_out]
        sample.items = []
        tokenizer, tokenizer_report = train_tokenizer(train_sample, request.tokenizer_config, request.seed)
        del train_sample
    progress.stage("tokenizing", total=report.kept)
    dtype = id_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size))
    lengths_dtype = length_dtype(request.cleaning.max_chars)
    files, train_pairs = _encode(cleaned, held_out, tokenizer, folder, dtype, lengths_dtype, progress)
    if not train_pairs:
        raise UserError(f"--dev-size {dev_size} leaves no pairs to train on")
    if held_out:  # other pairs with a dev pair's source left training too: "also in dev", so that kept = train + dev
        also_in_dev = report.kept - len(dev) - train_pairs
        report.in_dev += also_in_dev
        report.kept -= also_in_dev
    if tokenizer_report is None:
        tokenizer_report = measure(tokenizer, _first_pairs(cleaned, held_out, MEASURE_PAIRS))
    cleaned.unlink()
    if request.tokenizer is None:
        tokenizer.save(folder)
    write_atomic(folder / DEV_FILE, "".join(f"{s}\t{t}\n" for s, t in dev).encode())
    for name in [*(tokenizer.file_names() if request.tokenizer is None else []), DEV_FILE]:
        files[name] = {"bytes": (folder / name).stat().st_size, "sha256": file_digest(folder / name)}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "request": key,
        "dev_size": dev_size,
        "dev_pairs": len(dev),
        "train_pairs": train_pairs,
        "report": asdict(report),
        "tokenizer_config": None if request.tokenizer else asdict(request.tokenizer_config),
        "tokenizer_files": tokenizer_digests(tokenizer),
        "tokenizer_report": asdict(tokenizer_report),
        "dtype": dtype.name,
        "lengths_dtype": lengths_dtype.name,
        "files": files,
    }
    write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())


def _give_back_freed_memory() -> None:
    """Hand the memory preparation freed in this process back to the system before training starts.

    A large corpus is prepared in a process of its own, whose memory goes with it; a small
    one here, where the allocator would keep what preparation freed (the tokenizer's
    sample, SentencePiece's work) for reuse. glibc's malloc_trim returns it; elsewhere
    this does nothing.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _with(request: PrepareRequest, tokenizer: Tokenizer | None) -> PrepareRequest:
    return PrepareRequest(**{**request.__dict__, "tokenizer": tokenizer})


def _read_dev(spec: CorpusSpec | None) -> tuple[list[int], list[tuple[str, str]]]:
    """A given dev set, lightly cleaned (no length rules: it is scored, not trained on)."""
    if spec is None:
        return [], []
    dev, _ = clean_pairs(read_pairs(spec), CleaningConfig(max_chars=10**9, max_ratio=float("inf")))
    if not dev:
        raise UserError(f"{spec.describe()}: the dev set holds no usable pairs")
    return [pair_key(s, t) for s, t in dev], dev


def _encode(
    cleaned: Path, held_out: set[str], tokenizer: Tokenizer, folder: Path, dtype: np.dtype, lengths_dtype: np.dtype,
    progress: Progress,
) -> tuple[dict[str, dict], int]:
    """Second pass: the cleaned text → token shards, on all cores. Returns (files, train pairs)."""
    writers = [TokenWriter(folder, side, dtype, lengths_dtype) for side in ("src", "tgt")]
    encoding = encoding_for(tokenizer, held_out, dtype, lengths_dtype)
    train_pairs = 0
    try:
        blocks = encoded_blocks(cleaned, encoding, usable_cores())
        with contextlib.closing(blocks):
            for block in blocks:
                writers[0].append(block.src_ids, block.src_lengths)
                writers[1].append(block.tgt_ids, block.tgt_lengths)
                train_pairs += block.pairs
                progress.advance(block.lines)
        files = {}
        for writer in writers:
            files.update(writer.finish())
        return files, train_pairs
    except BaseException:
        for writer in writers:
            writer.abandon()
        raise


def _first_pairs(cleaned: Path, held_out: set[str], count: int) -> list[tuple[str, str]]:
    """The first `count` training pairs of the cleaned text (the tokenizer report's sample)."""
    first: list[tuple[str, str]] = []
    with open(cleaned, encoding="utf-8", newline="\n") as handle:
        for line in handle:
            src, tgt = line[:-1].split("\t")
            if src not in held_out:
                first.append((src, tgt))
                if len(first) == count:
                    break
    return first


class Reservoir:
    """A seeded uniform sample of at most `size` items from a stream (Li's Algorithm L).

    While the stream is no longer than `size`, it holds every item in order. After that,
    instead of drawing a random number for every item (Algorithm R), it draws how many
    items to skip before the next one it takes: about size × ln(seen / size) draws in
    all, and no work at all for the items skipped. The sample does not depend on how the
    stream is cut into the lists given to `offer_many`.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.rng, self.seen = size, random.Random(seed), 0
        self.items: list = []
        self.weight = 1.0  # the largest of `size` uniform keys so far, as Algorithm L keeps it
        self.next = 0  # the stream position of the next item to take once full

    def offer_many(self, items: list) -> None:
        begin = self.seen  # stream position of items[0]
        self.seen += len(items)
        if len(self.items) < self.size:
            room = self.size - len(self.items)
            self.items += items[:room]
            if len(self.items) < self.size:
                return
            self.next = begin + room - 1  # the item that filled it: skip on from there
            self._skip()
        while self.size and self.next < self.seen:
            self.items[self.rng.randrange(self.size)] = items[self.next - begin]
            self._skip()

    def _skip(self) -> None:
        self.weight *= math.exp(math.log(self._uniform()) / self.size)
        self.next += int(math.log(self._uniform()) / math.log1p(-self.weight)) + 1

    def _uniform(self) -> float:
        """A uniform number in (0, 1): the logarithms above need it above zero."""
        while (u := self.rng.random()) == 0.0:
            pass
        return u
