"""`tt info`: what a model folder holds — config, parameters per component, training summary, curves.

The curves are drawn with plain characters (a braille-free, dependency-free plot): one
column per bucket of steps, the training loss as `·` and the dev loss as `o`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tt.model.checkpoint import METRICS, load_model_folder
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
    path = folder / METRICS
    if not path.exists():
        return []
    metrics = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # blank, or the half line of a run killed while writing it
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            metrics.append(record)
    return metrics


def plot(series: dict[str, list[tuple[float, float]]], width: int = 60, height: int = 12) -> Text:
    """A character plot of several (x, y) series on shared axes."""
    points = [p for values in series.values() for p in values]
    if not points:
        return Text("no metrics recorded yet", style="dim")
    x_min, x_max = min(p[0] for p in points), max(p[0] for p in points)
    y_min, y_max = min(p[1] for p in points), max(p[1] for p in points)
    x_span, y_span = (x_max - x_min) or 1.0, (y_max - y_min) or 1.0
    grid = [[" "] * width for _ in range(height)]
    marks = {name: mark for name, mark in zip(series, "·o*+")}
    for name, values in series.items():
        for x, y in values:
            column = round((x - x_min) / x_span * (width - 1))
            row = height - 1 - round((y - y_min) / y_span * (height - 1))
            grid[row][column] = marks[name]
    text = Text()
    for i, row in enumerate(grid):
        label = y_max - i * y_span / (height - 1)
        text.append(f"{label:8.3f} │" + "".join(row) + "\n")
    text.append(" " * 9 + "└" + "─" * width + "\n")
    text.append(" " * 10 + f"step {x_min:g}" + " " * max(1, width - 20) + f"step {x_max:g}\n")
    text.append("          " + "   ".join(f"{mark} {name}" for name, mark in marks.items()), style="dim")
    return text


def info_view(folder: Path) -> Group:
    model, tokenizer, record = load_model_folder(folder)
    config = Table(title=f"{folder}", title_justify="left", show_header=False)
    config.add_column(style="bold")
    config.add_column()
    for section in ("model", "train", "tokenizer"):
        for key, value in (record.get(section) or {}).items():
            config.add_row(f"{section}.{key}", str(value))
    config.add_row("steps trained", str(record.get("step")))
    if record.get("best"):
        config.add_row("best checkpoint", f"dev BLEU {record['best']['dev_bleu']:.2f} at step {record['best']['step']}")
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
    for key, value in ((record.get("summary") or {}).get("cleaning") or {}).items():
        summary.add_row(key, f"{value:,}")
    metrics = read_metrics(folder)
    train = [(m["step"], m["nll"]) for m in metrics if "nll" in m]
    dev = [(m["step"], m["dev_loss"]) for m in metrics if "dev_loss" in m]
    curve = plot({"training cross-entropy (nats)": train, "dev cross-entropy (nats)": dev})
    return Group(config, params, summary, Text("loss curves", style="bold"), curve)
