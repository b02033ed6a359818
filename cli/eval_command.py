"""`tt eval`: translate the source side of a test set and score it against its references.

The references are the raw text of the test file: nothing normalized, nothing dropped. A
line with an empty source gets an empty translation and is still scored.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tt.model.translator import Search, Translator
from tt.data.corpus import CorpusSpec, check_spec, read_pairs
from tt.data.errors import UserError
from tt.data.atomic import write_atomic
from tt.model.decode import DecodeConfig
from tt.model.beam import BeamConfig
from tt.model.evaluate import score_corpus


def run_eval(folder: Path, spec: CorpusSpec, config: DecodeConfig, beam: BeamConfig, console: Console) -> tuple[dict, list[str]]:
    """The scores, and the translations (for --output, written by the caller once all succeeded)."""
    check_spec(spec)
    pairs = list(read_pairs(spec))
    if not any(pair.src.strip() or pair.tgt.strip() for pair in pairs):
        raise UserError(f"{spec.describe()}: the test set is empty")
    empty = [pair.where for pair in pairs if not pair.tgt.strip()]
    if empty:  # sacrebleu scores them as they are: chrF even counts an empty reference as matched
        console.print(
            f"[yellow]warning:[/] {len(empty):,} of {len(pairs):,} references are empty, first at {escape(empty[0])}; "
            "they are scored as they are (chrF counts them as perfect matches)"
        )
    translator = Translator(folder, config.device)
    sources = [pair.src for pair in pairs]
    references = [pair.tgt for pair in pairs]
    hypotheses: list[str] = []
    cut: list[str] = []  # where a source was longer than the model's positions
    started = time.monotonic()
    progress = Progress(
        TextColumn("translating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,  # a pipe or a log gets no bar, nor its blank line
    )
    with progress:
        task = progress.add_task("eval", total=len(sources))
        step = max(config.batch_size, 64)
        for start in range(0, len(sources), step):
            chunk = sources[start : start + step]
            results = translator.translate(chunk, config, search=Search(beam=beam))
            hypotheses += [t.translation for t in results]
            cut += [pairs[start + i].where for i, t in enumerate(results) if t.truncated_from is not None]
            progress.advance(task, len(chunk))
    if cut:
        console.print(f"[yellow]warning:[/] {len(cut)} source(s) longer than the model's positions were cut, first at {escape(cut[0])}")
    seconds = time.monotonic() - started
    scores = score_corpus(hypotheses, references)
    return {
        "bleu": round(scores.bleu, 4),  # not 100.00000000000004: sacrebleu's own float noise
        "chrf": round(scores.chrf, 4),
        "sentences": scores.sentences,
        "signature": {"bleu": scores.bleu_signature, "chrf": scores.chrf_signature},
        "beam": beam.beam,
        "length_penalty": beam.alpha,
        "model": str(folder),
        "test": spec.describe(),
        "seconds": seconds,
        "sentences_per_s": len(sources) / max(seconds, 1e-9),
    }, hypotheses


def write_translations(output: Path, hypotheses: list[str]) -> None:
    write_atomic(output, "".join(h + "\n" for h in hypotheses).encode("utf-8"))


def eval_table(result: dict) -> Table:
    table = Table(title=f"{result['test']} with {result['model']}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("BLEU", f"{result['bleu']:.2f}")
    table.add_row("chrF", f"{result['chrf']:.2f}")
    table.add_row("sentences", f"{result['sentences']:,}")
    decoding = "greedy" if result["beam"] == 1 else f"beam {result['beam']}, length penalty {result['length_penalty']:g}"
    table.add_row("decoding", decoding)
    table.add_row("speed", f"{result['sentences_per_s']:.1f} sentences/s")
    table.add_row("BLEU signature", result["signature"]["bleu"])
    table.add_row("chrF signature", result["signature"]["chrf"])
    return table


def run_calibration(folder: Path, spec: CorpusSpec, bins: int = 10, device: str = "cpu") -> dict:
    """Teacher-forced reliability of the argmax on the test set (tt.model.calibration)."""
    import math

    from tt.data.normalize import normalize
    from tt.model.calibration import calibration
    from tt.model.forced import force_decode

    check_spec(spec)
    pairs = [p for p in read_pairs(spec) if normalize(p.src) and normalize(p.tgt)]
    if not pairs:
        raise UserError(f"{spec.describe()}: no pairs with both sides to score")
    translator = Translator(folder, device)
    tokenizer = translator.tokenizer
    positions = translator.model.config.max_positions
    src = [tokenizer.fit_source(tokenizer.encode_src(normalize(p.src)), positions) for p in pairs]
    tgt = [tokenizer.encode_tgt(normalize(p.tgt))[:positions] for p in pairs]  # the decoder's positions: <s> + all but the last
    confidences, correct = [], []
    for result in force_decode(translator.model, src, tgt):
        for token, top, top_log_prob in zip(result.tokens, result.argmax, result.argmax_log_probs):
            confidences.append(math.exp(top_log_prob))
            correct.append(top == token)
    table, ece = calibration(confidences, correct, bins)
    return {
        "ece": ece,
        "tokens": len(confidences),
        "accuracy": sum(correct) / len(correct),
        "bins": [vars(b) for b in table],
    }


def calibration_table(result: dict) -> Table:
    table = Table(title=f"calibration under teacher forcing: ECE {result['ece']:.4f} over {result['tokens']:,} tokens", title_justify="left")
    for column in ("confidence bin", "tokens", "mean confidence", "accuracy", "gap"):
        table.add_column(column, justify="right")
    for b in result["bins"]:
        gap = b["accuracy"] - b["confidence"]
        table.add_row(f"{b['low']:.1f}–{b['high']:.1f}", f"{b['count']:,}", f"{b['confidence']:.3f}", f"{b['accuracy']:.3f}", f"{gap:+.3f}")
    table.caption = "gap < 0: over-confident; > 0: under-confident"
    return table
