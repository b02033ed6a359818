"""Cross-attention as a heatmap in the terminal: source pieces across, target pieces down.

Each cell is a shaded block for the weight with the weight beside it (`.38` is 0.38), so
the map still reads where there is no colour (a pipe, a log file). Cells are four
characters wide and columns are parted by a space, so a sentence of about fifteen pieces
fits an 80-column terminal. Renderers return rich objects; the command (`tt.cli.translate_command`) prints them.
"""

from __future__ import annotations

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from tt.cli.consoles import printable
from tt.model.translator import AttentionView, Translation, Translator, attention_rows

SHADES = " ░▒▓█"


def shade(weight: float) -> str:
    return SHADES[min(int(weight * len(SHADES)), len(SHADES) - 1)]


def weight_label(weight: float) -> str:
    """Three characters: `.38` for 0.38, `1.0` for (nearly) all of the attention."""
    percent = round(weight * 100)
    return "1.0" if percent >= 100 else f".{percent:02d}"


def cell(weight: float) -> Text:
    # The block's density carries the weight in any colour scheme; the number stays plain
    # (dim when negligible) so that it reads on dark and light terminals alike.
    text = Text(shade(weight), style="cyan")
    text.append(weight_label(weight), style="dim" if weight < 0.05 else "")
    return text


def describe(view: AttentionView, n_layers: int, n_heads: int) -> str:
    layer = view.layer or n_layers
    heads = f"head {view.head}" if view.head is not None else f"mean of {n_heads} heads"
    return f"cross-attention, decoder layer {layer} of {n_layers}, {heads}"


class Heatmap:
    """A rich renderable: as many source columns per table as the console's width allows.

    A long sentence is cut into several tables, one under the other, rather than cropped:
    a heatmap with its last columns missing would read as one without those pieces.
    """

    def __init__(self, result: Translation, translator: Translator, view: AttentionView):
        config = translator.model.config
        self.title = printable(f"{result.source} → {result.translation}")
        self.caption = describe(view, config.n_layers, config.n_heads)
        self.sources = result.src_pieces
        hyp = result.hypothesis
        self.targets = [translator.piece(token) for token in hyp.tokens] if hyp else []
        self.rows = attention_rows(result, view)

    def column_widths(self) -> list[int]:
        return [max(4, cell_len(piece)) for piece in self.sources]  # a cell is 4 wide

    def spans(self, max_width: int) -> list[tuple[int, int]]:
        """[start, end) of the source columns each table shows."""
        label = max([cell_len(piece) for piece in self.targets] + [1])
        spans, start, used = [], 0, label
        for index, width in enumerate(self.column_widths()):
            if index > start and used + 1 + width > max_width:
                spans.append((start, index))
                start, used = index, label
            used += 1 + width  # a space parts the columns
        return spans + [(start, len(self.sources))]

    def table(self, start: int, end: int) -> Table:
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 0), collapse_padding=True)
        table.add_column("", style="bold", no_wrap=True)  # target pieces
        for piece, width in zip(self.sources[start:end], self.column_widths()[start:end]):
            table.add_column(Text(piece), justify="right", min_width=width, no_wrap=True)  # Text: never markup
        for target, row in zip(self.targets, self.rows):
            table.add_row(Text(target), *[cell(w) for w in row[start:end]])
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Title and captions are lines of their own: inside the table they would wrap at
        # its width, or widen it.
        yield Text(self.title, style="italic")
        if not self.rows:
            return
        spans = self.spans(options.max_width)
        for start, end in spans:
            yield self.table(start, end)
            if len(spans) > 1:
                yield Text(f"source pieces {start + 1}–{end} of {len(self.sources)}", style="dim")
        yield Text(self.caption, style="dim")


def attention_heatmap(result: Translation, translator: Translator, view: AttentionView) -> Heatmap:
    return Heatmap(result, translator, view)
