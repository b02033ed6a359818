"""Snapshot tests: the exact text of the tables, for fixed synthetic decoding steps.

The steps are written here (distributions over a five-piece vocabulary), not produced by a
model, so the snapshots change only when a table's layout does, never with torch's kernels.
A deliberate change to a layout is accepted by re-running with TT_UPDATE_SNAPSHOTS=1 and
reading the diff before committing it.
"""

import math
import os
from pathlib import Path
from types import SimpleNamespace

import torch
from rich.console import Console

from tt.cli.tables import lens_table, probability_table
from tt.model.translator import Translation
from tt.model.decode import Hypothesis, Step

SNAPSHOTS = Path(__file__).parent / "snapshots"
PIECES = ["</s>", "▁Hello", "▁W", "orld", "!"]
# Each step's distribution over PIECES, the chosen piece, and two "layers" for the lens.
STEPS = [  # no two probabilities equal within a distribution: the top-k order is never a tie
    ([0.03, 0.90, 0.05, 0.015, 0.005], 1, [[0.25, 0.22, 0.2, 0.18, 0.15], [0.03, 0.90, 0.05, 0.015, 0.005]]),
    ([0.04, 0.06, 0.60, 0.25, 0.05], 2, [[0.1, 0.5, 0.2, 0.12, 0.08], [0.04, 0.06, 0.60, 0.25, 0.05]]),
    ([0.08, 0.10, 0.12, 0.30, 0.40], 4, [[0.32, 0.1, 0.12, 0.2, 0.26], [0.08, 0.10, 0.12, 0.30, 0.40]]),
    ([0.97, 0.012, 0.01, 0.005, 0.003], 0, [[0.5, 0.1, 0.12, 0.08, 0.2], [0.97, 0.012, 0.01, 0.005, 0.003]]),
]

def synthetic_result() -> tuple[Translation, SimpleNamespace]:
    def log(p: list[float]) -> torch.Tensor:
        return torch.tensor(p, dtype=torch.float64).log()

    hyp = Hypothesis(
        tokens=[token for _, token, _ in STEPS],
        token_log_probs=[math.log(p[token]) for p, token, _ in STEPS],
        steps=[Step(log_probs=log(p), layer_log_probs=[log(layer) for layer in layers]) for p, _, layers in STEPS],
    )
    result = Translation("你好世界!", "Hello W!", ["▁你好", "世界", "!", "</s>"], hyp)
    return result, SimpleNamespace(piece=lambda token_id: PIECES[token_id])


def render(renderable) -> str:
    console = Console(width=100, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def check(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("TT_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {name}: run with TT_UPDATE_SNAPSHOTS=1 to record it"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; TT_UPDATE_SNAPSHOTS=1 to accept"


def test_probability_table_text():
    result, translator = synthetic_result()
    check("probs_table.txt", render(probability_table(result, translator, 3)))


def test_lens_table_text():
    result, translator = synthetic_result()
    check("lens_table.txt", render(lens_table(result, translator)))
