"""`tt translate`: where the sentences come from (arguments, --file, stdin, a prompt) and go to.

stdout holds exactly one translation per input line (empty lines stay empty), or one JSON
object per line with --json, or tables with --probs. --output is written to a temporary
file and renamed at the end: an interrupted run never leaves half a file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterable, TextIO

from rich.console import Console

from tt.cli.tables import probability_table
from tt.cli.translator import Translator, chunks, to_json
from tt.data.corpus import read_lines
from tt.data.errors import UserError
from tt.model.decode import DecodeConfig


def run_translate(folder: Path, texts, file, output, probs, k, json_lines, batch_size, precision) -> None:
    if output is not None and output.exists() and output.is_dir():
        raise UserError(f"--output {output}: is a folder")
    if file is not None:
        lines: Iterable[str] = (line for _, line in read_lines(str(file)))
    elif texts:
        lines = texts
    elif sys.stdin.isatty():
        return _interactive(folder, probs, k, json_lines, precision)
    else:
        lines = sys.stdin
    translator = Translator(folder)
    config = DecodeConfig(batch_size=batch_size, precision=precision)
    if output is None:
        _translate_to(sys.stdout, translator, lines, config, probs, k, json_lines)
        return
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            _translate_to(handle, translator, lines, config, probs, k, json_lines)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)


def _translate_to(handle: TextIO, translator, lines, config, probs, k, json_lines) -> None:
    console = Console(file=handle) if probs else None
    inspect = probs or json_lines
    # Small chunks from an interactive pipe keep answers flowing; files go in full batches.
    for chunk in chunks(lines, config.batch_size):
        for result in translator.translate(chunk, config, inspect=inspect):
            if json_lines:
                handle.write(json.dumps(to_json(result, translator, k), ensure_ascii=False) + "\n")
            elif probs:
                console.print(probability_table(result, translator, k))
            else:
                handle.write(result.translation + "\n")
        handle.flush()


def _interactive(folder: Path, probs, k, json_lines, precision) -> None:
    stderr = Console(stderr=True)
    translator = Translator(folder)
    config = DecodeConfig(batch_size=1, precision=precision)
    stderr.print(f"[dim]model {folder}: type a sentence, Enter to translate, Ctrl-D to quit[/]")
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        _translate_to(sys.stdout, translator, [line], config, probs, k, json_lines)
