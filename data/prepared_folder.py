"""A prepared folder, read: what it was made from, and whether it can be used.

`manifest.json` is written last and says what the folder was prepared from (the source
files' sizes and SHA-256, the cleaning options, dev split, seed, tokenizer) and what it
holds (every file's size and SHA-256). A folder whose manifest is missing (a preparation
killed halfway), does not match the request (a changed corpus, other options) or whose
files do not match it (a truncated or edited shard) is never used: `tt.data.prepare`
prepares it again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tt.data.clean import CleaningConfig, CleaningReport
from tt.data.corpus import CorpusSpec
from tt.data.errors import UserError
from tt.data.shards import TokenArray, check_files, file_digest, open_tokens
from tt.data.tokenizer import Tokenizer, TokenizerConfig, TokenizerReport

FORMAT = "tt-prepared"
VERSION = 1
MANIFEST = "manifest.json"
DEV_FILE = "dev.tsv"
LOCK = ".lock"  # held while a process prepares the folder (tt.data.prepare)


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
    # --resume: the sources' bytes the run started from (`data_key` of its first preparation);
    # other bytes are refused before the folder is touched, not prepared again.
    same_data_as: dict | None = None


@dataclass
class PreparedCorpus:
    folder: Path
    tokenizer: Tokenizer
    src: TokenArray
    tgt: TokenArray
    dev: list[tuple[str, str]]
    report: CleaningReport
    tokenizer_report: TokenizerReport
    reused: bool = False
    made_from: dict | None = None  # the manifest's record of the sources' bytes and layout (`data_key`)

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
        """The dev set as token ids of at most `limit`, and its reference texts.

        A long source is cut as translation cuts it (`fit_source`: its </s> kept), so the dev
        BLEU is that of what `tt translate` would say; a long reference is cut to its first
        `limit` pieces, whose loss is what the model can be scored on."""
        tokenizer = self.tokenizer
        return (
            [tokenizer.fit_source(tokenizer.encode_src(s), limit) for s, _ in self.dev],
            [tokenizer.encode_tgt(t)[:limit] for _, t in self.dev],
            [t for _, t in self.dev],
        )


def open_prepared(folder: Path, request: PrepareRequest, verify: bool = True) -> PreparedCorpus:
    """A folder another process just prepared for this request (torchrun's other ranks)."""
    found = open_if_valid(folder, request, request_key(request), verify)
    if not isinstance(found, PreparedCorpus):
        raise UserError(f"{folder}: {found or 'no prepared data'} (is --out on a file system every process sees?)")
    return found


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
        data = {"train": spec_key(request.train), "dev": spec_key(request.dev) if request.dev else None}
    except OSError as err:
        raise UserError(f"{err.filename}: cannot read ({err.strerror})") from None
    return {**data, **options_key(request)}


def options_key(request: PrepareRequest) -> dict:
    """The part of a request's key that is not the sources' bytes: cleaning, dev split, seed."""
    return {"cleaning": asdict(request.cleaning), "dev_size": None if request.dev else request.dev_size, "seed": request.seed}


def data_key(key: dict) -> dict:
    """The part of a request's key that is the data itself: the sources' layout and bytes."""
    return {"train": key["train"], "dev": key["dev"]}


def changed_data(made: dict, key: dict, when: str) -> str | None:
    """How the sources now differ from `made` (a `data_key` recorded when `when`), or None."""
    for side, what in (("train", "corpus"), ("dev", "dev set")):
        then, now = made.get(side), key[side]
        if then == now:
            continue
        if then is None or now is None:
            return f"a {what} is {'given now but was not' if then is None else 'not given now but was'} when {when}"
        layout = lambda spec: {k: v for k, v in spec.items() if k != "files"} if isinstance(spec, dict) else spec
        if layout(then) != layout(now) and isinstance(then, dict):
            read = lambda spec: f"{spec.get('layout')}, format {spec.get('format') or 'from the extension'}, columns {spec.get('src_col')} and {spec.get('tgt_col')}"
            return f"the {what} is read otherwise than when {when} ({read(now)} now; {read(then)} then)"
        return f"the {what} changed since {when}"
    return None


def mismatch(manifest: dict, request: PrepareRequest, key: dict) -> str | None:
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        return "prepared by another version of tt"
    made = manifest.get("request") or {}
    changed = changed_data({"train": made.get("train"), "dev": made.get("dev")}, key, "it was prepared")
    if changed is not None:
        return changed
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
        if manifest.get("tokenizer_files") != tokenizer_digests(request.tokenizer):
            return "prepared with another tokenizer"
    elif made_with(manifest.get("tokenizer_config")) != asdict(request.tokenizer_config):
        return "prepared with other tokenizer options"
    return None


def made_with(tokenizer_config: dict | None) -> dict | None:
    """A manifest's tokenizer options, with the defaults of options added since it was written."""
    if not isinstance(tokenizer_config, dict):
        return tokenizer_config
    return {**asdict(TokenizerConfig()), **tokenizer_config}


def tokenizer_digests(tokenizer: Tokenizer) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in tokenizer.to_files().items()}


def open_if_valid(folder: Path, request: PrepareRequest, key: dict, verify: bool) -> PreparedCorpus | str | None:
    """The prepared corpus; or why the folder cannot be used; None where nothing was prepared."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        unfinished = folder.exists() and any(path.name != LOCK for path in folder.iterdir())
        return "an unfinished preparation (no manifest)" if unfinished else None
    except NotADirectoryError:
        blocking = next((part for part in (folder, *folder.parents) if part.is_file()), folder)  # folder, or one above it
        where = "is a file" if blocking == folder else f"{blocking} is a file"
        raise UserError(f"{folder}: {where}, not a folder for prepared data") from None
    except (OSError, ValueError) as err:
        return f"{MANIFEST} cannot be read ({err})"
    if not isinstance(manifest, dict):
        return f"{MANIFEST} is not a tt manifest"
    reason = mismatch(manifest, request, key) or check_files(folder, manifest.get("files") or {}, verify)
    if reason is not None:
        return reason
    try:
        tokenizer = request.tokenizer or Tokenizer.load(folder, list(manifest["tokenizer_files"]))
        rows = manifest["train_pairs"]
        src = open_tokens(folder, "src", manifest["dtype"], manifest["lengths_dtype"], rows)
        tgt = open_tokens(folder, "tgt", manifest["dtype"], manifest["lengths_dtype"], rows)
        dev = [tuple(line.split("\t")) for line in (folder / DEV_FILE).read_text(encoding="utf-8").splitlines()]
        report = CleaningReport(**manifest["report"])
        tokenizer_report = TokenizerReport(**manifest["tokenizer_report"])
    except (KeyError, TypeError, ValueError, UserError) as err:
        return f"{MANIFEST} does not describe the files ({err})"
    return PreparedCorpus(folder, tokenizer, src, tgt, dev, report, tokenizer_report, reused=True, made_from=data_key(manifest["request"]))
