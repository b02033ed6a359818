"""`tt info`: parameter counts add up, the curve plot draws every series, the command runs."""

from typer.testing import CliRunner

from conftest import TINY_MODEL_OPTIONS
from tt.cli.info_command import parameter_counts, plot, read_metrics
from tt.cli.main import app
from tt.model.checkpoint import load_model_folder
from tt.model.transformer import count_parameters

runner = CliRunner()


def test_parameter_counts_add_up(trained_model):
    model, _, _ = load_model_folder(trained_model)
    rows = parameter_counts(model)
    assert sum(n for _, n in rows) == count_parameters(model)
    assert dict(rows)["output projection (tied: the target embedding)"] == 0  # counted once, as the embedding


def test_plot_marks_both_series():
    text = plot({"train": [(0, 5.0), (10, 3.0), (20, 2.0)], "dev": [(10, 4.0), (20, 3.5)]}, width=21, height=5).plain
    lines = text.splitlines()
    assert lines[0].startswith("   5.000") and "·" in lines[0]  # the highest point is on the top row
    assert lines[4].startswith("   2.000") and lines[4].endswith("·")  # the lowest, last, bottom right
    assert sum(line.count("o") for line in lines[:5]) == 2  # both dev points, inside the grid


def test_info_command(trained_model):
    result = runner.invoke(app, ["info", "--model", str(trained_model)])
    assert result.exit_code == 0, result.output
    assert "parameters" in result.stdout and "loss curves" in result.stdout and "model.d_model" in result.stdout


def test_a_half_written_metrics_line_is_skipped_and_resume_starts_a_fresh_line(tmp_path, corpus_file):
    out = tmp_path / "model"
    assert runner.invoke(app, ["train", str(corpus_file), "--out", str(out), "--max-steps", "3", "--log-every", "1", *TINY_MODEL_OPTIONS]).exit_code == 0
    metrics = out / "metrics.jsonl"
    with metrics.open("a") as handle:
        handle.write('{"step": 4, "lo')  # a kill in the middle of a line
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3]
    resumed = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "5"])
    assert resumed.exit_code == 0, resumed.output
    assert [m["step"] for m in read_metrics(out) if "loss" in m] == [1, 2, 3, 4, 5]
    result = runner.invoke(app, ["info", "--model", str(out)])
    assert result.exit_code == 0, result.output
