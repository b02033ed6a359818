"""Rich renderings of `tt score`: one table per scored pair, and the corpus totals.

Renderers return rich objects; the command prints them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from tt.cli.consoles import printable
from tt.cli.tables import confidence_style

if TYPE_CHECKING:  # types only: score_command imports this module
    from tt.cli.score_command import ScoredPair, Totals


def score_table(scored: ScoredPair) -> Table:
    """Per reference token: p, −ln p, its rank, and what the model would have picked instead."""
    # Text, not a str: a bracket in the user's text must not be read as rich markup.
    table = Table(title=Text(printable(f"{scored.source} → {scored.reference}")), title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("token")
    table.add_column("p", justify="right")
    table.add_column("−ln p", justify="right")
    table.add_column("rank", justify="right")
    table.add_column("argmax")
    result = scored.result
    for position, (piece, log_p, rank, top) in enumerate(
        zip(scored.pieces, result.token_log_probs, result.ranks, scored.argmax), start=1
    ):
        prob = math.exp(log_p)
        table.add_row(
            str(position),
            Text(piece, style="bold"),
            Text(f"{prob:.4f}", style=confidence_style(prob)),
            f"{-log_p:.3f}",
            Text(str(rank), style="green" if rank == 1 else ""),
            Text(top, style="dim" if rank == 1 else "yellow"),
        )
    caption = f"cross-entropy = {scored.cross_entropy:.3f} nats/token   perplexity = {scored.perplexity:.3f}"
    if scored.segmentation_differs:
        caption += "\n(decoding and re-encoding these pieces gives another segmentation)"
    table.caption = caption
    table.min_width = max(map(len, caption.splitlines()))  # a caption wider than the table would wrap mid-phrase
    return table


def totals_table(totals: Totals) -> Table:
    table = Table(title="corpus", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("pairs", f"{totals.pairs:,}")
    table.add_row("tokens", f"{totals.tokens:,}")
    table.add_row("cross-entropy", f"{totals.cross_entropy:.4f} nats/token")
    table.add_row("perplexity", f"{totals.perplexity:.3f}")
    table.add_row("argmax agrees", f"{totals.top1 / max(totals.tokens, 1):.1%} of tokens")
    if totals.differs:
        table.add_row("segmentation differs", f"{totals.differs:,} pairs")
    return table


def totals_line(totals: Totals) -> str:
    return (
        f"{totals.pairs:,} pair{'' if totals.pairs == 1 else 's'}, {totals.tokens:,} tokens: cross-entropy {totals.cross_entropy:.4f} nats/token, "
        f"perplexity {totals.perplexity:.3f}, argmax agrees on {totals.top1 / max(totals.tokens, 1):.1%}"
    )
