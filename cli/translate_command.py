"""`tt translate`: where the sentences come from (arguments, --file, stdin, a prompt) and go to.

stdout holds exactly one translation per input line (empty lines stay empty), or one JSON
object per line with --json, or tables with --probs, --lens (the logit lens) and
--attention (a cross-attention heatmap). --output is written to a temporary
file and renamed at the end: an interrupted run never leaves half a file.

Sentences given as arguments, with nothing but plain greedy decoding asked for, take the
quick path: the same model in NumPy (tt.model.numpy_model), without importing torch.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterable, Iterator, TextIO

from rich.console import Console
from rich.markup import escape

from tt.cli.consoles import OutputConsole
from tt.data.atomic import atomic_text, check_output
from tt.data.corpus import open_binary
from tt.model.decode_config import DecodeConfig
from tt.model.translation import Translation

if TYPE_CHECKING:
    from tt.model.translator import AttentionView, Search

warnings = Console(stderr=True, soft_wrap=True)  # one line each, even in a pipe


def run_translate(
    folder: Path, texts, file, output, probs, k, json_lines, config: DecodeConfig, search: Search,
    lens: bool = False, view: AttentionView | None = None,
) -> None:
    """`view` (not None) asks for cross-attention; `lens` for each decoder layer's guess."""
    from tt.model.translator import Translator

    if output is not None:
        check_output(output, reading=file)
    if file is not None:
        lines: Iterable[str] = input_lines(open_binary(file), str(file))
    elif texts:
        lines = texts
    elif sys.stdin.isatty():
        return _interactive(folder, probs, k, json_lines, replace(config, batch_size=1), search, lens, view)
    else:
        lines = input_lines(sys.stdin.buffer, "<stdin>")
    translator = Translator(folder, config.device)
    if view is not None:
        translator.check_view(view)
    if output is None:
        _translate_to(sys.stdout, translator, lines, config, search, probs, k, json_lines, lens, view)
        return
    with atomic_text(output) as handle:
        _translate_to(handle, translator, lines, config, search, probs, k, json_lines, lens, view)


def input_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    """The lines to translate: one per "\n", whatever bytes they hold.

    Only "\n" ends a line (a form feed or U+2028 inside a line does not), so the output
    has exactly one line per input line. Invalid UTF-8 is not fatal here, unlike in a
    training corpus: the bad bytes become U+FFFD and a warning names the line.
    """
    with stream:
        for number, raw in enumerate(stream, start=1):
            raw = raw.removesuffix(b"\n").removesuffix(b"\r")
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                warnings.print(f"[yellow]warning:[/] {escape(name)}:{number}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}), replaced by U+FFFD")
                yield raw.decode("utf-8", errors="replace")


def translate_quickly(folder: Path, texts: list[str], output: Path | None) -> bool:
    """Plain greedy translations of `texts` without torch (tt.model.numpy_model), written as
    the full path writes them; False, with nothing written, where the model needs the full path."""
    from tt.model.numpy_model import open_quick_model

    if output is not None:
        check_output(output)
    translator = open_quick_model(folder)
    if translator is None:
        return False
    results = translator.translate([text.rstrip("\r\n") for text in texts])  # as chunks() gives them
    for number, result in enumerate(results, start=1):
        warn_if_truncated(result, number)
    text = "".join(result.translation + "\n" for result in results)
    if output is None:
        sys.stdout.write(text)
    else:
        with atomic_text(output) as handle:
            handle.write(text)
    return True


def warn_if_truncated(result: Translation, line_number: int) -> None:
    if result.truncated_from is not None:
        warnings.print(
            f"[yellow]warning:[/] sentence {line_number}: {result.truncated_from:,} source pieces, "
            f"more than the model's {len(result.src_pieces):,}: only the start is translated"
        )
    if result.unfinished:
        warnings.print(
            f"[yellow]warning:[/] sentence {line_number}: decoding reached its length limit before </s> "
            "(about twice the source's length): the translation may be cut short"
        )


def _translate_to(handle: TextIO, translator, lines, config, search, probs, k, json_lines, lens=False, view=None) -> None:
    from tt.cli.heatmap import attention_heatmap
    from tt.cli.tables import lens_table, probability_table
    from tt.model.translator import chunks, to_json

    tables = probs or lens or view is not None
    console = OutputConsole(file=handle) if tables else None
    inspect = probs or json_lines
    attention = view is not None
    first_index = 0
    # Lines go in chunks of --batch-size, from a file or a pipe alike: a line typed into an
    # interactive pipe is answered once its chunk fills or the input ends (--batch-size 1: at once).
    for chunk in chunks(lines, config.batch_size):
        results = translator.translate(chunk, config, inspect=inspect, attention=attention, lens=lens, search=search)
        for offset, result in enumerate(results):
            warn_if_truncated(result, first_index + offset + 1)
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
                for log_prob, text in result.n_best or [(0.0, "")] * search.outputs:  # an empty line: N empty outputs
                    handle.write(f"{first_index + offset}\t{log_prob:.4f}\t{text}\n")
            else:
                handle.write(result.translation + "\n")
        first_index += len(chunk)
        handle.flush()


def _interactive(folder: Path, probs, k, json_lines, config, search, lens, view) -> None:
    from tt.model.translator import Translator

    stderr = Console(stderr=True)
    translator = Translator(folder, config.device)
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
