"""`tt score`: how probable does the model find a given translation? Forced decoding.

Pairs in (one from --src/--ref, or a file read as training reads it) → both sides
normalized as `tt translate` normalizes → source ids and the reference's deterministic
segmentation → one teacher-forced pass per batch (`force_decode`) → per token its
probability, −ln p, rank and the model's own pick; per sentence the cross-entropy and
perplexity; corpus totals at the end for a file.

The whole input is read and checked before the first line is printed: a bad line (a
misaligned file, invalid UTF-8, a pair too long for the model) stops the run with its
file:line and no partial output. Then pairs go through in batches, printed as they go.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rich.console import Console

from tt.cli.consoles import OutputConsole
from tt.cli.score_table import score_table, totals_line, totals_table
from tt.model.translator import segmentation_differs
from tt.data.corpus import CorpusSpec, Pair, check_spec, read_pairs
from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.data.tokenizer import Tokenizer
from tt.model.folders import open_model
from tt.model.device import resolve_device
from tt.model.forced import ForcedResult, force_decode
from tt.model.transformer import Transformer


@dataclass
class ScoredPair:
    source: str  # as given
    reference: str  # as given
    result: ForcedResult
    pieces: list[str]  # the reference's pieces, </s> last
    argmax: list[str]  # the model's top piece at each position
    segmentation_differs: bool

    @property
    def cross_entropy(self) -> float:
        return self.result.cross_entropy

    @property
    def perplexity(self) -> float:
        return math.exp(self.cross_entropy)


@dataclass
class Totals:
    """Token-weighted over the corpus: CE = Σ −ln p / Σ tokens (not a mean of sentence CEs)."""

    pairs: int = 0
    tokens: int = 0
    nll: float = 0.0
    top1: int = 0  # tokens the model ranked first
    differs: int = 0  # pairs whose reference re-encodes differently

    def add(self, scored: ScoredPair) -> None:
        self.pairs += 1
        self.tokens += len(scored.result.tokens)
        self.nll -= sum(scored.result.token_log_probs)
        self.top1 += sum(1 for rank in scored.result.ranks if rank == 1)
        self.differs += scored.segmentation_differs

    @property
    def cross_entropy(self) -> float:
        return self.nll / max(self.tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(self.cross_entropy)


def score_inputs(
    src: str | None, ref: str | None, file: Path | None, src_file: Path | None, ref_file: Path | None,
    format: str | None, src_col: int, tgt_col: int,
) -> tuple[Iterable[Pair], bool]:
    """The pairs to score, and whether they come from files (then totals are printed)."""
    sentence = src is not None or ref is not None
    files = file is not None or src_file is not None or ref_file is not None
    if sentence and files:
        raise UserError("give --src and --ref, or a file (--file, or --src-file and --ref-file), not both")
    if sentence:
        if ref is None:
            raise UserError("--src needs --ref: the reference translation to score")
        if src is None:
            raise UserError("--ref needs --src: the source sentence it translates")
        return [Pair(src, ref, "--src/--ref")], False
    if not files:
        raise UserError("nothing to score: give --src and --ref, or --file, or --src-file and --ref-file")
    if file is not None and (src_file or ref_file):
        raise UserError("give --file or --src-file and --ref-file, not both")
    if file is None and not (src_file and ref_file):
        raise UserError("a pair of aligned files needs both --src-file and --ref-file")
    spec = CorpusSpec(
        path=str(file) if file else None, src_path=str(src_file) if src_file else None,
        tgt_path=str(ref_file) if ref_file else None, format=format, src_col=src_col, tgt_col=tgt_col,
    )
    check_spec(spec)  # a missing file fails now, before the model loads
    return read_pairs(spec), True


def encode_pairs(tokenizer: Tokenizer, pairs: list[Pair], limit: int) -> tuple[list[list[int]], list[list[int]]]:
    src_ids = [tokenizer.encode_src(normalize(pair.src)) for pair in pairs]
    tgt_ids = [tokenizer.encode_tgt(normalize(pair.tgt)) for pair in pairs]
    for pair, src, tgt in zip(pairs, src_ids, tgt_ids):
        if max(len(src), len(tgt)) > limit:
            raise UserError(f"{pair.where}: {max(len(src), len(tgt)):,} pieces, more than the model's {limit:,} positions")
    return src_ids, tgt_ids


def score_batch(
    model: Transformer, tokenizer: Tokenizer, pairs: list[Pair], src_ids: list[list[int]], tgt_ids: list[list[int]], batch_size: int
) -> list[ScoredPair]:
    """`pairs` with their ids from encode_pairs, scored in one teacher-forced pass per batch."""
    results = force_decode(model, src_ids, tgt_ids, batch_size)
    return [
        ScoredPair(
            source=pair.src,
            reference=pair.tgt,
            result=result,
            pieces=[tokenizer.tgt_piece(i) for i in result.tokens],
            argmax=[tokenizer.tgt_piece(i) for i in result.argmax],
            segmentation_differs=segmentation_differs(tokenizer, result.tokens),
        )
        for pair, result in zip(pairs, results)
    ]


def to_json(scored: ScoredPair) -> dict:
    result = scored.result
    tokens = [
        {"token": piece, "prob": math.exp(log_p), "nll": -log_p, "rank": rank, "argmax": top}
        for piece, log_p, rank, top in zip(scored.pieces, result.token_log_probs, result.ranks, scored.argmax)
    ]
    return {
        "source": scored.source,
        "reference": scored.reference,
        "tokens": tokens,
        "cross_entropy": scored.cross_entropy,
        "perplexity": scored.perplexity,
        "segmentation_differs": scored.segmentation_differs,
    }


def run_score(
    folder: Path, pairs: Iterable[Pair], from_files: bool, json_lines: bool, batch_size: int, stderr: Console, device: str = "cpu"
) -> None:
    """Scored pairs to stdout (tables, or JSON Lines); for files, totals after them."""
    model, tokenizer, _ = open_model(folder)
    model.to(resolve_device(device))
    pairs = list(pairs)  # every line read (and so checked) before anything is printed
    src_ids, tgt_ids = encode_pairs(tokenizer, pairs, model.config.max_positions)
    console = OutputConsole()
    totals = Totals()
    for start in range(0, len(pairs), batch_size):
        chunk = slice(start, start + batch_size)
        for scored in score_batch(model, tokenizer, pairs[chunk], src_ids[chunk], tgt_ids[chunk], batch_size):
            totals.add(scored)
            if json_lines:
                print(json.dumps(to_json(scored), ensure_ascii=False), flush=True)
            else:
                console.print(score_table(scored))
    if from_files and totals.pairs == 0:
        raise UserError("no pairs to score: the file is empty")
    if from_files:
        # JSON Lines stay one record per pair on stdout; the totals are a summary, for stderr.
        if json_lines:
            stderr.print(totals_line(totals))
        else:
            console.print(totals_table(totals))
