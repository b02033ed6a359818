"""`tt info`'s view of the probe sentences: how the model learned each one, step by step.

Per probe: a table with one row per recorded step and one column per reference piece, each
cell p(piece | the reference before it, source), coloured from red (improbable) to green,
then the cross-entropy and the greedy translation of that step; and the CE curve.

Probe lines come from metrics.jsonl (`tt.model.probes`), which may be a stranger's: a line
whose fields are not of the promised types is skipped.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tt.cli.consoles import printable
from tt.cli.curves import line_plot

MAX_ROWS = 24  # a long run's records are thinned to this many rows (first and last kept)


def probe_lines(metrics: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(source, reference) → its records in step order, from read_metrics' records."""
    probes: dict[tuple[str, str], list[dict]] = {}
    for record in metrics:
        if _is_probe_line(record):
            probes.setdefault((record["probe"], record["reference"]), []).append(record)
    return {key: sorted(records, key=lambda r: r["step"]) for key, records in probes.items()}


def _is_probe_line(record: dict) -> bool:
    tokens = record.get("tokens")
    return (
        isinstance(record.get("probe"), str)
        and isinstance(record.get("reference"), str)
        and isinstance(record.get("translation"), str)
        and _finite(record.get("cross_entropy"))
        and isinstance(tokens, list)
        and bool(tokens)
        and all(isinstance(t, dict) and isinstance(t.get("token"), str) and _finite(t.get("prob")) for t in tokens)
    )


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= 1e300


def thinned(records: list[dict], rows: int = MAX_ROWS) -> list[dict]:
    if len(records) <= rows:
        return records
    picks = sorted({round(i * (len(records) - 1) / (rows - 1)) for i in range(rows)})
    return [records[i] for i in picks]


def probability_style(p: float) -> str:
    """Red at p = 0 through yellow to green at p = 1."""
    p = min(max(p, 0.0), 1.0)
    red, green = (255, int(510 * p)) if p < 0.5 else (int(510 * (1 - p)), 255)
    return f"rgb({red},{green},0)"


def probe_view(source: str, reference: str, records: list[dict]) -> Group:
    pieces = [t["token"] for t in records[-1]["tokens"]]
    table = Table(title=Text(printable(f"probe: {source} → {reference}: p of each reference piece")), title_justify="left")
    table.add_column("step", justify="right")
    for piece in pieces:
        table.add_column(Text(piece), justify="right", no_wrap=True)
    table.add_column("CE", justify="right", no_wrap=True)
    translations = Table(title="its greedy translation", title_justify="left")
    translations.add_column("step", justify="right")
    translations.add_column("translation")
    for record in thinned(records):
        said = record["translation"]  # an untrained model often says nothing at all: shown, not a blank cell
        translations.add_row(str(record["step"]), Text(said) if said else Text("(empty)", style="dim"))
        if [t["token"] for t in record["tokens"]] != pieces:
            continue  # another segmentation: not the same columns
        cells = [Text(f"{t['prob']:.2f}".removeprefix("0"), style=probability_style(t["prob"])) for t in record["tokens"]]
        table.add_row(str(record["step"]), *cells, f"{record['cross_entropy']:.2f}")
    curve = line_plot(
        {"cross-entropy of the reference": [(r["step"], r["cross_entropy"]) for r in records]},
        f"probe {source}: −ln p(reference) per piece, over training", y_label="nats", height=12,
    )
    return Group(table, translations, curve)


def probes_view(metrics: list[dict]) -> Group | None:
    probes = probe_lines(metrics)
    if not probes:
        return None
    return Group(*(probe_view(source, reference, records) for (source, reference), records in probes.items()))
