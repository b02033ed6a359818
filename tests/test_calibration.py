"""Calibration: bins and ECE by their definitions, and `tt eval --calibration`."""

import json

import pytest
from typer.testing import CliRunner

from tt.cli.main import app
from tt.model.calibration import calibration
from conftest import tiny_pairs, write_tsv


def test_perfectly_calibrated_has_zero_ece():
    # In the 0.7–0.8 bin: confidence 0.75, right 3 times out of 4.
    bins, ece = calibration([0.75] * 4, [True, True, True, False])
    assert len(bins) == 1 and bins[0].accuracy == 0.75 and ece == pytest.approx(0.0)


def test_ece_is_the_weighted_gap():
    confidences = [0.95, 0.95, 0.15, 0.15, 0.15]
    correct = [False, True, False, False, True]
    bins, ece = calibration(confidences, correct)
    assert [b.count for b in bins] == [3, 2]
    expected = 3 / 5 * abs(1 / 3 - 0.15) + 2 / 5 * abs(0.5 - 0.95)
    assert ece == pytest.approx(expected)


def test_eval_calibration_json(trained_model, tmp_path):
    test = write_tsv(tmp_path / "t.tsv", tiny_pairs()[:10])
    result = CliRunner().invoke(app, ["eval", str(test), "--model", str(trained_model), "--calibration", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["calibration"]
    assert sum(b["count"] for b in record["bins"]) == record["tokens"] > 0
    assert 0 <= record["ece"] <= 1
    assert record["accuracy"] == pytest.approx(sum(b["accuracy"] * b["count"] for b in record["bins"]) / record["tokens"])
