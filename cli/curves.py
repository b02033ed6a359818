"""Curves in the terminal, drawn by plotext: lines with axes, a title and a legend, as rich Text.

One call draws one figure from `{series name: [(x, y), …]}`. Each series gets its own
marker character as well as its colour, so the legend still reads in a pipe or a log file
where colours are stripped. plotext keeps one global figure: every call starts it afresh.

The numbers may come from a stranger's metrics.jsonl: values too large to lay out on an
axis (beyond ±1e15, where no loss or gradient norm of ours lives) are left out, and the
figure says how many.
"""

from __future__ import annotations

import math

import plotext
from rich.text import Text

MARKERS = "•x+o*#%@&$"
COLORS = ["blue", "red", "green", "magenta", "cyan", "orange", "yellow", "gray", "white", "black"]
LARGEST = 1e15  # beyond this plotext's tick labels overflow; no loss or norm of ours gets near it


def line_plot(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    x_label: str = "step",
    y_label: str = "",
    log_y: bool = False,
    x_ticks: list[tuple[float, str]] | None = None,
    width: int = 80,
    height: int = 16,
) -> Text:
    """A plot of several (x, y) series on shared axes; `log_y` for quantities spanning decades."""
    kept: dict[str, list[tuple[float, float]]] = {}
    left_out = 0
    for name, points in series.items():
        usable = [(x, y) for x, y in points if _plottable(x) and _plottable(y) and (y > 0 or not log_y)]
        left_out += len(points) - len(usable)
        if usable:
            kept[name] = sorted(usable)
    if not kept:
        return Text(f"{title}: nothing recorded", style="dim")
    plotext.clf()
    plotext.plotsize(width, height)
    plotext.theme("clear")
    for index, (name, points) in enumerate(kept.items()):
        xs, ys = [x for x, _ in points], [y for _, y in points]
        plotext.plot(xs, ys, label=name, marker=MARKERS[index % len(MARKERS)], color=COLORS[index % len(COLORS)])
    if log_y:
        plotext.yscale("log")
    if x_ticks is None and x_label == "step":  # whole steps: plotext would label 32.5
        x_ticks = step_ticks(min(x for points in kept.values() for x, _ in points), max(x for points in kept.values() for x, _ in points))
    if x_ticks:
        plotext.xticks([x for x, _ in x_ticks], [label for _, label in x_ticks])
    plotext.title(title)
    plotext.xlabel(x_label)
    if y_label:
        plotext.ylabel(y_label)
    text = Text.from_ansi(plotext.build())
    plotext.clf()
    if left_out:
        text.append(f"\n{left_out} value(s) beyond what an axis can show were left out", style="dim")
    return text


def step_ticks(first: float, last: float, count: int = 5) -> list[tuple[float, str]]:
    """Up to `count` whole-number ticks from the first step to the last, evenly spread."""
    if last <= first:
        return [(first, f"{first:,.0f}")]
    steps = sorted({round(first + (last - first) * i / (count - 1)) for i in range(count)})
    return [(step, f"{step:,}") for step in steps]


def _plottable(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= LARGEST
