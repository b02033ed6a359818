"""`tt translate`: where the sentences come from (arguments, --file, stdin, a prompt) and go to.

stdout holds exactly one translation per input line (empty lines stay empty), or one JSON
object per line with --json, or tables with --probs, --lens (the logit lens) and
--attention (a cross-attention heatmap). --output is written to a temporary
file and renamed at the end: an interrupted run never leaves half a file.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterable, TextIO

from rich.console import Console

from tt.cli.heatmap import attention_heatmap
from tt.cli.tables import lens_table, probability_table
from tt.cli.translator import AttentionView, Search, Translator, chunks, to_json
from tt.data.corpus import read_lines
from tt.data.errors import UserError
from tt.model.decode import DecodeConfig


def run_translate(
    folder: Path, texts, file, output, probs, k, json_lines, config: DecodeConfig, search: Search,
    lens: bool = False, view: AttentionView | None = None,
) -> None:
    """`view` (not None) asks for cross-attention; `lens` for each decoder layer's guess."""
    if output is not None and output.exists() and output.is_dir():
        raise UserError(f"--output {output}: is a folder")
    if file is not None:
        lines: Iterable[str] = (line for _, line in read_lines(str(file)))
    elif texts:
        lines = texts
    elif sys.stdin.isatty():
        return _interactive(folder, probs, k, json_lines, replace(config, batch_size=1), search, lens, view)
    else:
        lines = sys.stdin
    translator = Translator(folder)
    if view is not None:
        translator.check_view(view)
    if output is None:
        _translate_to(sys.stdout, translator, lines, config, search, probs, k, json_lines, lens, view)
        return
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            _translate_to(handle, translator, lines, config, search, probs, k, json_lines, lens, view)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)


def _translate_to(handle: TextIO, translator, lines, config, search, probs, k, json_lines, lens=False, view=None) -> None:
    tables = probs or lens or view is not None
    console = Console(file=handle) if tables else None
    inspect = probs or json_lines
    attention = view is not None
    first_index = 0
    # Small chunks from an interactive pipe keep answers flowing; files go in full batches.
    for chunk in chunks(lines, config.batch_size):
        results = translator.translate(chunk, config, inspect=inspect, attention=attention, lens=lens, search=search)
        for offset, result in enumerate(results):
            if json_lines:
                record = to_json(result, translator, k, view)
                if search.outputs > 1:
                    key = "samples" if search.sampler is not None else "n_best"
                    record[key] = [{"translation": text, "log_prob": lp} for lp, text in result.n_best or []]
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            elif tables:
                if probs:
                    console.print(probability_table(result, translator, k))
                if lens:
                    console.print(lens_table(result, translator))
                if view is not None:
                    console.print(attention_heatmap(result, translator, view))
            elif search.outputs > 1:
                for log_prob, text in result.n_best or [(0.0, "")]:
                    handle.write(f"{first_index + offset}\t{log_prob:.4f}\t{text}\n")
            else:
                handle.write(result.translation + "\n")
        first_index += len(chunk)
        handle.flush()


def _interactive(folder: Path, probs, k, json_lines, config, search, lens, view) -> None:
    stderr = Console(stderr=True)
    translator = Translator(folder)
    if view is not None:
        translator.check_view(view)
    stderr.print(f"[dim]model {folder}: type a sentence, Enter to translate, Ctrl-D to quit[/]")
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        _translate_to(sys.stdout, translator, [line], config, search, probs, k, json_lines, lens, view)
