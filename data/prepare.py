"""Prepare a corpus once: read → clean → split off dev → tokenize → token ids on disk.

    corpus files ──clean_stream──▶ cleaned text (temporary) ──SentencePiece──▶ src/tgt shards
                    (dedup by hash,      + a sample for training   (all cores, in chunks)
                     dev picked by hash)   the tokenizer

Two streaming passes with memory flat in the corpus size: the first normalizes, cleans and
de-duplicates, writing the kept pairs to a temporary text file and keeping a seeded
reservoir sample for the tokenizer; the second encodes that file in chunks on all cores
into the memory-mapped shards of `tt.data.shards`. The dev pairs (at most a few thousand)
go to `dev.tsv`, the tokenizer beside them.

`manifest.json` is written last and says what the folder was prepared from (the source
files' sizes and SHA-256, the cleaning options, dev split, seed, tokenizer) and what it
holds (every file's size and SHA-256). A folder whose manifest is missing (a preparation
killed halfway), does not match the request (a changed corpus, other options) or whose
files do not match it (a truncated or edited shard) is never used: it is prepared again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from tt.data.atomic import write_atomic
from tt.data.clean import CleaningConfig, CleaningReport, DevPicker, auto_dev_size, clean_pairs, clean_stream, pair_key
from tt.data.corpus import CorpusSpec, check_spec, read_pairs
from tt.data.errors import UserError
from tt.data.shards import TokenArray, TokenWriter, check_files, file_digest, id_dtype, length_dtype, open_tokens
from tt.data.tokenizer import EOS_ID, Tokenizer, TokenizerConfig, TokenizerReport, measure, train_tokenizer

FORMAT = "tt-prepared"
VERSION = 1
MANIFEST = "manifest.json"
DEV_FILE = "dev.tsv"
ENCODE_CHUNK = 20_000  # pairs per SentencePiece call: big enough for its threads, small in memory
MEASURE_PAIRS = 5000  # the tokenizer report's sample: the first train pairs


@dataclass
class PrepareRequest:
    """What a prepared folder must have been made from to be used."""

    train: CorpusSpec
    dev: CorpusSpec | None
    cleaning: CleaningConfig
    tokenizer_config: TokenizerConfig
    seed: int
    dev_size: int | None = None  # pairs held out when no dev set is given; None: automatic
    tokenizer: Tokenizer | None = None  # encode with this one (--resume, --init-from) instead of training one


class Progress:
    """What preparation tells its caller (the CLI draws a bar); silent by default."""

    def stage(self, description: str, total: int | None = None) -> None: ...

    def advance(self, pairs: int) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class PreparedCorpus:
    folder: Path
    manifest: dict
    tokenizer: Tokenizer
    src: TokenArray
    tgt: TokenArray
    dev: list[tuple[str, str]]
    report: CleaningReport
    tokenizer_report: TokenizerReport
    reused: bool = False

    @property
    def train_pairs(self) -> int:
        return len(self.src)

    def within(self, limit: int) -> tuple[TokenArray, TokenArray]:
        """The training pairs whose both sides fit in `limit` tokens (the model's positions)."""
        fits = (np.asarray(self.src.lengths) <= limit) & (np.asarray(self.tgt.lengths) <= limit)
        if fits.all():
            return self.src, self.tgt
        rows = np.flatnonzero(fits)
        if not len(rows):
            raise UserError(f"every pair is longer than {limit} tokens: nothing to train on")
        return self.src.select(rows), self.tgt.select(rows)

    def dev_ids(self, limit: int) -> tuple[list[list[int]], list[list[int]], list[str]]:
        """The dev set as token ids cut to `limit`, and its reference texts."""
        encode_src, encode_tgt = self.tokenizer.encode_src, self.tokenizer.encode_tgt
        return (
            [encode_src(s)[:limit] for s, _ in self.dev],
            [encode_tgt(t)[:limit] for _, t in self.dev],
            [t for _, t in self.dev],
        )


def prepare(request: PrepareRequest, folder: Path, progress: Progress | None = None, verify: bool = True) -> PreparedCorpus:
    """The prepared corpus in `folder`: reused when it matches the request, else (re)built."""
    progress = progress or Progress()
    check_spec(request.train)
    if request.dev is not None:
        check_spec(request.dev)
    key = request_key(request)
    found = _open_if_valid(folder, request, key, verify)
    if isinstance(found, PreparedCorpus):
        return found
    if found is not None:
        progress.note(f"{folder}: {found}; preparing again")
    return _build(request, key, folder, progress)


def open_prepared(folder: Path, request: PrepareRequest, verify: bool = True) -> PreparedCorpus:
    """A folder another process just prepared for this request (torchrun's other ranks)."""
    found = _open_if_valid(folder, request, request_key(request), verify)
    if not isinstance(found, PreparedCorpus):
        raise UserError(f"{folder}: {found or 'no prepared data'} (is --out on a file system every process sees?)")
    return found


# ---- what the folder was made from


def request_key(request: PrepareRequest) -> dict:
    """Everything but the tokenizer that decides the prepared data; paths do not count, bytes do."""
    def spec_key(spec: CorpusSpec) -> dict:
        names = [spec.path] if spec.path else [spec.src_path, spec.tgt_path]
        return {
            "layout": "one file" if spec.path else "aligned files",
            "format": spec.format, "src_col": spec.src_col, "tgt_col": spec.tgt_col,
            "files": [{"bytes": Path(name).stat().st_size, "sha256": file_digest(Path(name))} for name in names],
        }

    try:
        return {
            "train": spec_key(request.train),
            "dev": spec_key(request.dev) if request.dev else None,
            "cleaning": asdict(request.cleaning),
            "dev_size": None if request.dev else request.dev_size,
            "seed": request.seed,
        }
    except OSError as err:
        raise UserError(f"{err.filename}: cannot read ({err.strerror})") from None


def _mismatch(manifest: dict, request: PrepareRequest, key: dict) -> str | None:
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        return "prepared by another version of tt"
    made = manifest.get("request") or {}
    if made.get("train") != key["train"]:
        return "the corpus changed since it was prepared"
    if made.get("dev") != key["dev"]:
        return "the dev set changed since it was prepared"
    if made.get("cleaning") != key["cleaning"]:
        return "prepared with other cleaning options"
    if made.get("seed") != key["seed"]:
        return "prepared with another --seed"
    # --resume asks for the number of dev pairs the run recorded; a new run for automatic or a given size
    if key["dev_size"] is not None and key["dev_size"] not in (made.get("dev_size"), manifest.get("dev_pairs")):
        return "prepared with another --dev-size"
    if key["dev_size"] is None and made.get("dev_size") is not None and key["dev"] is None:
        return "prepared with another --dev-size"
    if request.tokenizer is not None:
        if manifest.get("tokenizer_files") != _tokenizer_digests(request.tokenizer):
            return "prepared with another tokenizer"
    elif manifest.get("tokenizer_config") != asdict(request.tokenizer_config):
        return "prepared with other tokenizer options"
    return None


def _tokenizer_digests(tokenizer: Tokenizer) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in tokenizer.to_files().items()}


def _open_if_valid(folder: Path, request: PrepareRequest, key: dict, verify: bool) -> PreparedCorpus | str | None:
    """The prepared corpus; or why the folder cannot be used; None where nothing was prepared."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "an unfinished preparation (no manifest)" if folder.exists() and any(folder.iterdir()) else None
    except NotADirectoryError:
        raise UserError(f"{folder}: is a file, not a folder for prepared data") from None
    except (OSError, ValueError) as err:
        return f"{MANIFEST} cannot be read ({err})"
    if not isinstance(manifest, dict):
        return f"{MANIFEST} is not a tt manifest"
    reason = _mismatch(manifest, request, key) or check_files(folder, manifest.get("files") or {}, verify)
    if reason is not None:
        return reason
    try:
        tokenizer = request.tokenizer or Tokenizer.load(folder)
        rows = manifest["train_pairs"]
        src = open_tokens(folder, "src", manifest["dtype"], manifest["lengths_dtype"], rows)
        tgt = open_tokens(folder, "tgt", manifest["dtype"], manifest["lengths_dtype"], rows)
        dev = [tuple(line.split("\t")) for line in (folder / DEV_FILE).read_text(encoding="utf-8").splitlines()]
        report = CleaningReport(**manifest["report"])
        tokenizer_report = TokenizerReport(**manifest["tokenizer_report"])
    except (KeyError, TypeError, ValueError, UserError) as err:
        return f"{MANIFEST} does not describe the files ({err})"
    return PreparedCorpus(folder, manifest, tokenizer, src, tgt, dev, report, tokenizer_report, reused=True)


# ---- building


@contextlib.contextmanager
def _building(folder: Path) -> Iterator[None]:
    """Hold the folder's lock while preparing; on failure leave no file of this attempt."""
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{folder}: cannot create the folder for prepared data ({err.strerror or err})") from None
    lock = open(folder / ".lock", "a")
    try:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # another process preparing here: wait for it
        (folder / MANIFEST).unlink(missing_ok=True)  # from here on, the folder is not valid until we finish
        for stale in folder.glob(".*.tmp-*"):  # a killed preparation's leftovers
            stale.unlink(missing_ok=True)
        yield
    except BaseException:
        for ours in folder.glob(f".*.tmp-{os.getpid()}"):
            ours.unlink(missing_ok=True)
        if created:
            lock.close()
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.close()
        with contextlib.suppress(OSError):
            if created and folder.exists() and [p.name for p in folder.iterdir()] == [".lock"]:
                shutil.rmtree(folder, ignore_errors=True)


def _build(request: PrepareRequest, key: dict, folder: Path, progress: Progress) -> PreparedCorpus:
    with _building(folder):
        exclude, dev_pairs = _read_dev(request.dev)
        cleaned = folder / f".cleaned.tsv.tmp-{os.getpid()}"
        report = CleaningReport()
        capacity = 0 if request.dev else (1000 if request.dev_size is None else request.dev_size)
        picker = DevPicker(capacity, request.seed)
        sample = Reservoir(request.tokenizer_config.sample_sentences, request.seed)
        progress.stage(f"cleaning {request.train.describe()}")
        reported = 0
        with open(cleaned, "w", encoding="utf-8", newline="\n") as handle:
            for count, (src, tgt) in enumerate(clean_stream(read_pairs(request.train), request.cleaning, report, exclude), 1):
                handle.write(f"{src}\t{tgt}\n")
                picker.offer(src, tgt)
                if request.tokenizer is None:
                    sample.offer((src, tgt))
                if count % 1000 == 0:
                    progress.advance(report.read - reported)
                    reported = report.read
        progress.advance(report.read - reported)
        if not report.kept:
            raise UserError(
                f"{request.train.describe()}: no usable pairs (read {report.read}, {report.read - report.kept} dropped by cleaning)"
            )
        dev_size = auto_dev_size(report.kept) if request.dev_size is None else request.dev_size
        dev = dev_pairs if request.dev else picker.pick(dev_size)
        held_out = set() if request.dev else {src for src, _ in dev}

        tokenizer, tokenizer_report = request.tokenizer, None
        if tokenizer is None:
            progress.stage("training the SentencePiece tokenizer")
            train_sample = [pair for pair in sample.pairs if pair[0] not in held_out]
            sample.pairs = []
            tokenizer, tokenizer_report = train_tokenizer(train_sample, request.tokenizer_config, request.seed)
            del train_sample
        progress.stage("tokenizing", total=report.kept)
        files, train_pairs, first = _encode(cleaned, held_out, tokenizer, folder, request.cleaning, progress)
        cleaned.unlink()
        if not train_pairs:
            raise UserError(f"--dev-size {dev_size} leaves no pairs to train on")
        if tokenizer_report is None:
            tokenizer_report = measure(tokenizer, first)
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
            "tokenizer_files": _tokenizer_digests(tokenizer),
            "tokenizer_report": asdict(tokenizer_report),
            "dtype": id_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)).name,
            "lengths_dtype": length_dtype(request.cleaning.max_chars).name,
            "files": files,
        }
        write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
    found = _open_if_valid(folder, request if request.tokenizer else _with(request, tokenizer), key, verify=False)
    assert isinstance(found, PreparedCorpus), found
    found.reused = False
    return found


def _with(request: PrepareRequest, tokenizer: Tokenizer) -> PrepareRequest:
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
    cleaned: Path, held_out: set[str], tokenizer: Tokenizer, folder: Path, cleaning: CleaningConfig, progress: Progress
) -> tuple[dict[str, dict], int, list[tuple[str, str]]]:
    """Second pass: the cleaned text → token shards. Returns (files, train pairs, the first pairs)."""
    dtype = id_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size))
    writers = [TokenWriter(folder, side, dtype, length_dtype(cleaning.max_chars)) for side in ("src", "tgt")]
    threads = max(1, os.cpu_count() or 1)
    first: list[tuple[str, str]] = []
    train_pairs = 0
    try:
        with open(cleaned, encoding="utf-8", newline="\n") as handle:
            while True:
                lines = handle.readlines(1 << 21)  # about 2 MB of text at a time
                if not lines:
                    break
                pairs = [line[:-1].split("\t") for line in lines]
                progress.advance(len(pairs))
                if held_out:
                    pairs = [pair for pair in pairs if pair[0] not in held_out]
                if len(first) < MEASURE_PAIRS:
                    first.extend(tuple(pair) for pair in pairs[: MEASURE_PAIRS - len(first)])
                train_pairs += len(pairs)
                for begin in range(0, len(pairs), ENCODE_CHUNK):
                    part = pairs[begin : begin + ENCODE_CHUNK]
                    writers[0].append(tokenizer.src.encode([s for s, _ in part], num_threads=threads), EOS_ID)
                    writers[1].append(tokenizer.tgt.encode([t for _, t in part], num_threads=threads), EOS_ID)
        files = {}
        for writer in writers:
            files.update(writer.finish())
        return files, train_pairs, first
    except BaseException:
        for writer in writers:
            writer.abandon()
        raise


class Reservoir:
    """A seeded uniform sample of at most `size` items from a stream (Algorithm R).

    While the stream is no longer than `size`, it holds every item in order.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.rng, self.seen = size, random.Random(seed), 0
        self.pairs: list = []

    def offer(self, item) -> None:
        self.seen += 1
        if len(self.pairs) < self.size:
            self.pairs.append(item)
            return
        slot = self.rng.randrange(self.seen)
        if slot < self.size:
            self.pairs[slot] = item
