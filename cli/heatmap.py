"""Cross-attention as a heatmap in the terminal: source pieces across, target pieces down.

Each cell is a shaded block for the weight, with the weight in percent beside it, so the
map still reads where there is no colour (a pipe, a log file). Renderers return rich
objects; `tt.cli.main` prints them.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from tt.cli.translator import AttentionView, Translation, Translator, attention_rows

SHADES = " ░▒▓█"


def shade(weight: float) -> str:
    return SHADES[min(int(weight * len(SHADES)), len(SHADES) - 1)]


def cell(weight: float) -> Text:
    # The block's density carries the weight in any colour scheme; the number stays plain
    # (dim when negligible) so that it reads on dark and light terminals alike.
    text = Text(shade(weight), style="cyan")
    text.append(f"{round(weight * 100):3d}", style="dim" if weight < 0.05 else "")
    return text


def describe(view: AttentionView, n_layers: int, n_heads: int) -> str:
    layer = view.layer or n_layers
    heads = f"head {view.head}" if view.head is not None else f"mean of {n_heads} heads"
    return f"cross-attention, decoder layer {layer} of {n_layers}, {heads}"


def attention_heatmap(result: Translation, translator: Translator, view: AttentionView) -> Table:
    config = translator.model.config
    table = Table(
        title=f"{result.source} → {result.translation}", title_justify="left",
        caption=f"{describe(view, config.n_layers, config.n_heads)}; weights in %", padding=(0, 1),
    )
    table.add_column("", style="bold")  # target pieces
    for piece in result.src_pieces:
        table.add_column(piece, justify="right", no_wrap=True)
    hyp = result.hypothesis
    for token, row in zip(hyp.tokens if hyp else [], attention_rows(result, view)):
        table.add_row(translator.piece(token), *[cell(w) for w in row])
    return table
