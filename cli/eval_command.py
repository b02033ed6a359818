"""`tt eval`: translate the source side of a test set and score it against its references.

The references are the raw text of the test file: nothing normalized, nothing dropped. A
line with an empty source gets an empty translation and is still scored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tt.cli.translator import Search, Translator
from tt.data.corpus import CorpusSpec, check_spec, read_pairs
from tt.data.errors import UserError
from tt.model.decode import BeamConfig, DecodeConfig
from tt.model.evaluate import score_corpus


def run_eval(folder: Path, spec: CorpusSpec, config: DecodeConfig, beam: BeamConfig, output: Path | None, console: Console) -> dict:
    check_spec(spec)
    pairs = list(read_pairs(spec))
    if not pairs:
        raise UserError(f"{spec.describe()}: the test set is empty")
    translator = Translator(folder)
    sources = [pair.src for pair in pairs]
    references = [pair.tgt for pair in pairs]
    hypotheses: list[str] = []
    started = time.monotonic()
    progress = Progress(TextColumn("translating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True)
    with progress:
        task = progress.add_task("eval", total=len(sources))
        step = max(config.batch_size, 64)
        for start in range(0, len(sources), step):
            chunk = sources[start : start + step]
            hypotheses += [t.translation for t in translator.translate(chunk, config, search=Search(beam=beam))]
            progress.advance(task, len(chunk))
    seconds = time.monotonic() - started
    if output is not None:
        temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
        temporary.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
        os.replace(temporary, output)
    scores = score_corpus(hypotheses, references)
    return {
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "sentences": scores.sentences,
        "signature": {"bleu": scores.bleu_signature, "chrf": scores.chrf_signature},
        "beam": beam.beam,
        "length_penalty": beam.alpha,
        "model": str(folder),
        "test": spec.describe(),
        "seconds": seconds,
        "sentences_per_s": len(sources) / max(seconds, 1e-9),
    }


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
