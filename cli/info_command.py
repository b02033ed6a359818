"""`tt info`: what a model folder holds — config, parameters per component, training summary, curves.

From metrics.jsonl: the training and dev loss curves, the gradient norm of each part of the
model over training and its mean by depth (is the gradient vanishing on its way down?), and
the probe sentences (`tt.cli.probe_view`). Several folders (`tt info RUN_A RUN_B`) are shown
overlaid, one curve per run: the same experiment with one option changed, side by side.

The folder may come from a stranger: a config.json part of the wrong type counts as absent,
only finite real numbers count as measurements, and an unreadable metrics.jsonl costs the
plot, not the rest of the view.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tt.cli.curves import line_plot
from tt.cli.probe_view import probes_view
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
        landed = ", where the cool-down landed" if "landed" in best else ""
        config.add_row("kept checkpoint", f"dev BLEU {bleu:.2f} at step {best_step}{landed}")
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
    if not summary.rows:  # a Marian folder, or a run that recorded none: no empty box
        summary = Text("training data: not recorded in this folder", style="dim")
    try:
        metrics = read_metrics(folder)
    except UserError as err:  # the rest of the folder is still worth showing
        return Group(config, params, summary, Text("loss curves", style="bold"), Text(str(err), style="dim"))
    curves = [loss_plot({"": metrics})]
    flow = gradient_norms(metrics)
    if flow:
        curves.append(line_plot(
            {part: points for part, points in flow.items() if part in watched_parts(list(flow))},
            "gradient norm per part, over training (before clipping)", y_label="‖g‖", log_y=True,
        ))
        curves.append(depth_plot({"": metrics}))
    updates = gradient_norms(metrics, "update_ratio")
    if updates:
        curves.append(line_plot(
            {part: points for part, points in updates.items() if part in watched_parts(list(updates))},
            "update size per part, ‖Δw‖/‖w‖ of each step (rule of thumb: about 1e-3)",
            y_label="‖Δw‖/‖w‖", log_y=True,
        ))
    probes = probes_view(metrics)
    return Group(config, params, summary, Text("loss curves", style="bold"), *curves, *([probes] if probes else []))


def loss_plot(runs: dict[str, list[dict]]) -> Text:
    """Training and dev cross-entropy, one pair of curves per run (name "" for a single run)."""
    series = {}
    for name, metrics in runs.items():
        prefix = f"{name}: " if name else ""
        series[f"{prefix}training CE"] = metric_points(metrics, "nll")
        series[f"{prefix}dev CE"] = metric_points(metrics, "dev_loss")
    return line_plot(series, "cross-entropy −ln p(reference), nats per token", y_label="nats")


def gradient_norms(metrics: list[dict], key: str = "grad_norm") -> dict[str, list[tuple[float, float]]]:
    """Part → (step, value) from the metrics lines' `grad_norm` objects (or `update_ratio`'s)."""
    parts: dict[str, list[tuple[float, float]]] = {}
    for record in metrics:
        values = record.get(key)
        if not isinstance(values, dict):
            continue
        for part, value in values.items():
            if isinstance(part, str) and number(value) is not None:
                parts.setdefault(part, []).append((number(record["step"]), number(value)))
    return parts


def watched_parts(parts: list[str]) -> list[str]:
    """The embeddings, each stack's first and last layer, and the output: the ends of the gradient's path."""
    kept = [p for p in ("embeddings", "output") if p in parts]
    for stack in ("encoder", "decoder"):
        layers = [p for p in parts if p.startswith(stack + ".")]
        kept += layers[:1] + layers[-1:]
    return kept


def depth_order(parts: list[str]) -> list[str]:
    """embeddings, encoder.0 … encoder.N-1, decoder.0 … decoder.N-1, output: the forward path."""
    def key(part: str):
        stack, _, index = part.partition(".")
        rank = {"embeddings": 0, "encoder": 1, "decoder": 2, "output": 3}.get(stack, 4)
        return (rank, int(index) if index.isdigit() else 0, part)

    return sorted(parts, key=key)


def depth_plot(runs: dict[str, list[dict]]) -> Text:
    """Mean gradient norm of each part against its depth: one curve per run."""
    flows = {name: gradient_norms(metrics) for name, metrics in runs.items()}
    order = depth_order(list({part for flow in flows.values() for part in flow}))
    series = {}
    for name, flow in flows.items():
        means = {part: sum(v for _, v in points) / len(points) for part, points in flow.items()}
        series[name or "mean over training"] = [(order.index(part), mean) for part, mean in means.items()]
    short = {"embeddings": "emb", "output": "out"}
    ticks = [(i, short.get(part, part.replace("encoder.", "enc").replace("decoder.", "dec"))) for i, part in enumerate(order)]
    return line_plot(
        series, "gradient norm by depth (mean over training): input side left, output right",
        x_label="part", y_label="‖g‖", log_y=True, x_ticks=ticks,
    )


def compare_view(folders: list[Path]) -> Group:
    """Several runs overlaid: their options that differ, loss curves, gradient norms by depth."""
    runs: dict[str, list[dict]] = {}
    records = {}
    unreadable = []  # one line per run whose metrics.jsonl could not be read: its curves are missing
    for folder in folders:
        _, _, record = open_model(folder)
        name = folder.name if folder.name not in runs else str(folder)
        if name in runs:  # the same folder given twice
            name = f"{name} ({len(runs) + 1})"
        records[name] = record
        try:
            runs[name] = read_metrics(folder)
        except UserError as err:
            runs[name] = []
            unreadable.append(Text(f"{name}: {err}", style="dim"))
    # One column per run and a row per option that differs: a handful of runs fit in the width,
    # where a column per option cut its name down to "trai…" after a few options.
    table = Table(title="runs", title_justify="left")
    table.add_column("")
    for name in records:
        table.add_column(Text(name), justify="right")
    keys = sorted({(part, key) for r in records.values() for part in ("model", "train", "tokenizer", "cleaning") for key in section(r, part)})
    differing = [k for k in keys if len({json.dumps(section(r, k[0]).get(k[1]), default=str) for r in records.values()}) > 1]
    for part, key in differing:
        table.add_row(Text(f"{part}.{key}"), *(Text(str(section(record, part).get(key))) for record in records.values()))
    steps = [record.get("step") for record in records.values()]
    table.add_row("steps", *(str(step) if is_count(step) else "unknown" for step in steps), style="bold")
    for label, key in (("last training CE", "nll"), ("last dev CE", "dev_loss")):
        last = [metric_points(runs[name], key) for name in records]
        table.add_row(label, *(f"{points[-1][1]:.3f}" if points else "–" for points in last), style="bold")
    parts = [table, *unreadable, loss_plot(runs)]
    if any(gradient_norms(metrics) for metrics in runs.values()):
        parts.append(depth_plot(runs))
        for name, metrics in runs.items():
            flow = gradient_norms(metrics)
            if flow:
                parts.append(line_plot(
                    {part: points for part, points in flow.items() if part in watched_parts(list(flow))},
                    f"{name}: gradient norm per part, over training", y_label="‖g‖", log_y=True,
                ))
    return Group(*parts)
