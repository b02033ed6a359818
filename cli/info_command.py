"""`tt info`: what a model folder holds — config, parameters per component, training summary, curves.

The curves are drawn with plain characters (a braille-free, dependency-free plot): one
column per bucket of steps, the training loss as `·` and the dev loss as `o`.

The folder may come from a stranger: a config.json part of the wrong type counts as absent,
only finite real numbers count as measurements, and an unreadable metrics.jsonl costs the
plot, not the rest of the view.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tt.data.errors import UserError
from tt.model.checkpoint import METRICS
from tt.model.folders import open_model
from tt.model.transformer import Transformer


def parameter_counts(model: Transformer) -> list[tuple[str, int]]:
    seen: set[int] = set()

    def count(module) -> int:
        total = 0
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total

    rows = [("source embedding", count(model.src_embed))]
    rows.append(("target embedding" + (" (tied: the source's)" if model.tgt_embed is model.src_embed else ""), count(model.tgt_embed)))
    rows.append(("encoder", count(model.encoder) + count(model.encoder_norm)))
    rows.append(("decoder", count(model.decoder) + count(model.final_norm)))
    tied = model.project.weight is model.tgt_embed.weight
    rows.append(("output projection" + (" (tied: the target embedding)" if tied else ""), count(model.project)))
    return rows


def read_metrics(folder: Path) -> list[dict]:
    """The records of metrics.jsonl that have a step; a line that is not one is skipped.

    The folder may come from a stranger: a metrics.jsonl that is a folder, a device or
    unreadable is a UserError for the caller to show in place of the plot.
    """
    path = folder / METRICS
    if not path.exists():
        return []
    if not path.is_file():  # a folder, or /dev/zero behind a link: never read those
        raise UserError(f"{path}: not a regular file")
    metrics = []
    try:
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    record = json.loads(raw.decode("utf-8", errors="replace"))
                except (ValueError, RecursionError):
                    continue  # blank, the half line of a run killed while writing it, or junk
                if isinstance(record, dict) and is_count(record.get("step")) and number(record["step"]) is not None:
                    metrics.append(record)
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror or err})") from None
    return metrics


def number(value) -> float | None:
    """A finite real number as a float, else None: JSON's NaN, true or "3" are not measurements."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        return None
    return value if math.isfinite(value) else None


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not step 1


def metric_points(metrics: list[dict], key: str) -> list[tuple[float, float]]:
    """(step, value) for each record (from read_metrics) whose `key` is a usable number."""
    values = [(number(record["step"]), number(record.get(key))) for record in metrics]
    return [(step, value) for step, value in values if value is not None]


def axis(low: float, high: float):
    """Maps [low, high] to [0, 1] and back, without overflow even for ±1.8e308.

    high - low can exceed the largest float; halving both ends first (exact for floats
    this large) keeps the span finite.
    """
    half = 1.0 if math.isfinite(high - low) else 0.5
    span = (high * half - low * half) or 1.0  # one value only: a unit-high axis around it

    def to_unit(value: float) -> float:
        return (value * half - low * half) / span

    def from_unit(fraction: float) -> float:
        biggest = sys.float_info.max  # rounding at ±max could still tip a label into ±inf
        return min(max((low * half + fraction * span) / half, -biggest), biggest)

    return to_unit, from_unit


def plot(series: dict[str, list[tuple[float, float]]], width: int = 60, height: int = 12) -> Text:
    """A character plot of several (x, y) series on shared axes."""
    points = [p for values in series.values() for p in values]
    if not points:
        return Text("no metrics recorded yet", style="dim")
    x_min, x_max = min(p[0] for p in points), max(p[0] for p in points)
    y_min, y_max = min(p[1] for p in points), max(p[1] for p in points)
    x_unit, _ = axis(x_min, x_max)
    y_unit, y_value = axis(y_min, y_max)
    grid = [[" "] * width for _ in range(height)]
    marks = {name: mark for name, mark in zip(series, "·o*+")}
    for name, values in series.items():
        for x, y in values:
            column = round(x_unit(x) * (width - 1))
            row = height - 1 - round(y_unit(y) * (height - 1))
            grid[row][column] = marks[name]
    # Fixed point up to ±10⁴, then exponents: 1e308 in fixed point is 309 digits wide.
    labels = [y_value(1 - i / (height - 1)) for i in range(height)]
    labels = [f"{label:.3f}" if abs(label) < 1e4 else f"{label:.2g}" for label in labels]
    margin = max(8, *map(len, labels))
    text = Text()
    for label, row in zip(labels, grid):
        text.append(label.rjust(margin) + " │" + "".join(row) + "\n")
    text.append(" " * (margin + 1) + "└" + "─" * width + "\n")
    text.append(" " * (margin + 2) + f"step {x_min:g}" + " " * max(1, width - 20) + f"step {x_max:g}\n")
    text.append(" " * (margin + 2) + "   ".join(f"{mark} {name}" for name, mark in marks.items()), style="dim")
    return text


def section(record: dict, key: str) -> dict:
    """A part of config.json that should be an object; anything else counts as absent."""
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def info_view(folder: Path) -> Group:
    model, tokenizer, record = open_model(folder)
    # Text, not str, in every cell: a key like "[/b]" in a stranger's config is not rich markup.
    config = Table(title=Text(str(folder)), title_justify="left", show_header=False)
    config.add_column(style="bold")
    config.add_column()
    for name in ("model", "train", "tokenizer"):
        for key, value in section(record, name).items():
            config.add_row(Text(f"{name}.{key}"), Text(str(value)))
    step = record.get("step")
    config.add_row("steps trained", str(step) if is_count(step) else "unknown")
    best = section(record, "best")
    bleu, best_step = number(best.get("dev_bleu")), best.get("step")
    if bleu is not None and is_count(best_step):
        config.add_row("best checkpoint", f"dev BLEU {bleu:.2f} at step {best_step}")
    params = Table(title="parameters", title_justify="left", show_header=False)
    params.add_column()
    params.add_column(justify="right")
    rows = parameter_counts(model)
    for name, n in rows:
        params.add_row(name, f"{n:,}")
    params.add_row("total", f"{sum(n for _, n in rows):,}", style="bold")
    summary = Table(title="training data", title_justify="left", show_header=False)
    summary.add_column()
    summary.add_column(justify="right")
    for key, value in section(section(record, "summary"), "cleaning").items():
        if is_count(value):  # pair counts; anything else is not ours to show
            summary.add_row(Text(key), f"{value:,}")
    try:
        metrics = read_metrics(folder)
    except UserError as err:  # the rest of the folder is still worth showing
        curve = Text(str(err), style="dim")
    else:
        curve = plot({
            "training cross-entropy (nats)": metric_points(metrics, "nll"),
            "dev cross-entropy (nats)": metric_points(metrics, "dev_loss"),
        })
    return Group(config, params, summary, Text("loss curves", style="bold"), curve)
