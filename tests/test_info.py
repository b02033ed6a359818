"""`tt info`: parameter counts add up, the curve plot draws every series, the command runs (one run or
several overlaid), and a tampered or damaged folder is shown as far as it can be, never with a traceback."""

import json
import re
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TINY_MODEL_OPTIONS
from tt.cli.curves import line_plot
from tt.cli.info_command import depth_order, metric_points, parameter_counts, read_metrics
from tt.cli.main import app
from tt.model.checkpoint import load_model_folder
from tt.model.transformer import count_parameters

runner = CliRunner()


def test_parameter_counts_add_up(trained_model):
    model, _, _ = load_model_folder(trained_model)
    rows = parameter_counts(model)
    assert sum(n for _, n in rows) == count_parameters(model)
    assert dict(rows)["output projection (tied: the target embedding)"] == 0  # counted once, as the embedding


def test_plot_marks_both_series_with_a_legend():
    text = line_plot({"train": [(0, 5.0), (10, 3.0), (20, 2.0)], "dev": [(10, 4.0), (20, 3.5)]}, "loss", width=40, height=12).plain
    lines = text.splitlines()
    assert "•• train" in text and "xx dev" in text  # the legend: marker and name of each series
    y_labels = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    assert float(y_labels[0]) == 5.0 and float(y_labels[-1]) == 2.0  # the y axis spans the data, top to bottom
    plot_rows = [line for line in lines if "┤" in line or "│" in line]
    assert sum(row.count("x") for row in plot_rows) > 2 and sum(row.count("•") for row in plot_rows) > 2
    assert "20" in lines[-2] and "0" in lines[-2]  # x ticks from the first step to the last


def test_depth_order_follows_the_forward_path():
    parts = ["output", "decoder.1", "encoder.10", "decoder.0", "embeddings", "encoder.2"]
    assert depth_order(parts) == ["embeddings", "encoder.2", "encoder.10", "decoder.0", "decoder.1", "output"]


def test_info_command(trained_model):
    result = runner.invoke(app, ["info", "--model", str(trained_model)])
    assert result.exit_code == 0, result.output
    assert "parameters" in result.stdout and "loss curves" in result.stdout and "model.d_model" in result.stdout
    assert "gradient norm per part" in result.stdout and "encoder.0" in result.stdout
    assert "update size per part, ‖Δw‖/‖w‖ of each step" in result.stdout


def test_update_ratios_are_read_per_part_from_the_metrics_lines():
    from tt.cli.info_command import gradient_norms

    metrics = [
        {"step": 50, "grad_norm": {"output": 0.5}, "update_ratio": {"output": 1e-3, "encoder.0": 2e-3}},
        {"step": 60, "dev_loss": 2.0},
        {"step": 100, "update_ratio": {"output": 5e-4, "encoder.0": "x"}},
    ]
    assert gradient_norms(metrics, "update_ratio") == {"output": [(50, 1e-3), (100, 5e-4)], "encoder.0": [(50, 2e-3)]}


def test_info_with_two_runs_renders_both(trained_model, tmp_path):
    other = Path(shutil.copytree(trained_model, tmp_path / "other-run"))
    tamper_config(other, "model", {**json.loads((other / "config.json").read_text())["model"], "residual": False})
    lines = [json.loads(line) for line in (other / "metrics.jsonl").read_text().splitlines()]
    (other / "metrics.jsonl").write_text("".join(json.dumps({**l, "nll": l["nll"] + 1}) + "\n" for l in lines if "nll" in l))
    result = runner.invoke(app, ["info", str(trained_model), str(other)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "model.residual" in out  # the option that differs between the runs
    assert "tokenizer." not in out  # the same tokenizer: no row
    twice = runner.invoke(app, ["info", str(trained_model), str(trained_model)])
    assert twice.exit_code == 0 and str(trained_model) in twice.stdout, twice.output  # two columns, not one
    assert f"{trained_model.name}: training CE" in out and "other-run: training CE" in out  # both curves, in one legend
    assert "gradient norm by depth" in out and f"{trained_model.name}: gradient norm per part" in out and "other-run: gradient norm per part" in out


def test_info_of_two_runs_says_whose_metrics_cannot_be_read(trained_model, tmp_path):
    other = Path(shutil.copytree(trained_model, tmp_path / "other-run"))
    (other / "metrics.jsonl").unlink()
    (other / "metrics.jsonl").mkdir()
    result = runner.invoke(app, ["info", str(trained_model), str(other)])
    assert result.exit_code == 0, result.output
    assert "other-run: " in result.stdout and "not a regular file" in result.stdout  # why its curves are missing
    assert f"{trained_model.name}: training CE" in result.stdout  # the readable run is still drawn


def test_info_shows_the_probes(model_copy):
    def line(step, probs, translation):
        tokens = [{"token": piece, "prob": p} for piece, p in zip(["▁Hello", "▁World", "!", "</s>"], probs)]
        return {"step": step, "probe": "你好世界!", "reference": "Hello World!", "tokens": tokens, "cross_entropy": 1.0, "translation": translation}

    records = [
        line(0, [0.01, 0.02, 0.03, 0.04], "gibberish"), line(25, [0.1, 0.1, 0.1, 0.1], ""), line(50, [0.9, 0.8, 0.7, 0.6], "Hello World!"),
        {"step": 60, "probe": 3},
    ]
    with (model_copy / "metrics.jsonl").open("a") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))
    out = run_info(model_copy).stdout
    assert "probe: 你好世界! → Hello World!" in out and "▁World" in out and "</s>" in out
    assert "gibberish" in out and ".02" in out and ".80" in out  # each step's translation and p of each piece
    assert re.search(r"\b25 │ \(empty\)", out)  # a translation of nothing is said, not a blank cell
    assert "probe 你好世界!: −ln p(reference)" in out  # the CE curve


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


# ---- a stranger's damaged or tampered folder: info shows what it can, never a traceback

GOOD_METRICS = ['{"step": 10, "nll": 4.0}', '{"step": 20, "nll": 3.0, "dev_loss": 3.5}']


@pytest.fixture
def model_copy(trained_model, tmp_path):
    return Path(shutil.copytree(trained_model, tmp_path / "model"))


def run_info(folder):
    result = runner.invoke(app, ["info", "--model", str(folder)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def tamper_config(folder, key, value):
    path = folder / "config.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record[key] = value
    path.write_text(json.dumps(record), encoding="utf-8")  # json.dumps writes NaN as NaN, as a stranger could


@pytest.mark.parametrize(
    "key, value",
    [
        ("train", "x"), ("train", 5), ("train", [1, 2]), ("train", {"[/bold]": "[/red]"}),  # markup is text here
        ("tokenizer", "x"), ("tokenizer", None), ("corpus", 7),
        ("best", 5), ("best", "x"), ("best", [1]), ("best", {"dev_bleu": "x", "step": 3}), ("best", {"dev_bleu": 3.0}),
        ("best", {"step": 4}), ("best", {"dev_bleu": float("nan"), "step": 4}), ("best", {"dev_bleu": 1e308, "step": True}),
        ("summary", "x"), ("summary", 3), ("summary", {"cleaning": "x"}), ("summary", {"cleaning": [1]}),
        ("summary", {"cleaning": {"kept": "x", "pairs read": None, "[/x]": [1], "dropped": True}}),
        ("step", "x"), ("step", None), ("step", [1]), ("step", True), ("step", float("inf")),
    ],
)
def test_info_survives_wrong_types_in_config(model_copy, key, value):
    tamper_config(model_copy, key, value)
    result = run_info(model_copy)
    assert result.exit_code == 0, result.output
    assert "parameters" in result.stdout and "model.d_model" in result.stdout and "loss curves" in result.stdout


def test_info_shows_a_good_best_checkpoint(model_copy):
    tamper_config(model_copy, "best", {"dev_bleu": 12.345, "step": 20})
    assert "dev BLEU 12.35 at step 20" in run_info(model_copy).stdout


@pytest.mark.parametrize("config_text", ['{"model": 3}', "[1, 2]", '"x"', "{not json"])
def test_info_on_an_unusable_config_is_one_error_line(model_copy, config_text):
    (model_copy / "config.json").write_text(config_text, encoding="utf-8")
    result = run_info(model_copy)
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:") and "config.json" in errors[0]


@pytest.mark.parametrize(
    "bad_line",
    [
        '{"step": 15, "nll": NaN}', '{"step": 15, "nll": Infinity}', '{"step": 15, "nll": -Infinity}',
        '{"step": 15, "dev_loss": NaN}', '{"step": 15, "nll": "x"}', '{"step": 15, "nll": true}',
        '{"step": 15, "nll": null}', '{"step": 15, "nll": [1]}', '{"step": "x", "nll": 2.0}', '{"step": true, "nll": 2.0}',
        '{"step": 15.5, "nll": 2.0}', '{"step": 1e400, "nll": 2.0}', '{"step": ' + "9" * 400 + ', "nll": 2.0}',
        '[1, 2]', '"x"', "null", "17", "{",
    ],
)
def test_info_skips_unusable_metrics_lines(model_copy, bad_line):
    (model_copy / "metrics.jsonl").write_text("\n".join([GOOD_METRICS[0], bad_line, GOOD_METRICS[1]]) + "\n", encoding="utf-8")
    result = run_info(model_copy)
    assert result.exit_code == 0, result.output
    curve = result.stdout.split("loss curves", 1)[1]
    assert "training CE" in curve and "dev CE" in curve and "nan" not in curve and "inf" not in curve  # the good points, drawn
    ticks = curve.splitlines()[curve.splitlines().index(next(l for l in curve.splitlines() if "└" in l)) + 1]
    assert ticks.split()[0].startswith("10") and ticks.split()[-1].startswith("20")  # the bad line's step did not stretch the axis


@pytest.mark.parametrize("extreme", ["1e308", "-1e308", "1.7976931348623157e308", "5e-324"])
def test_info_plots_extreme_finite_values(model_copy, extreme):
    lines = [f'{{"step": 1, "nll": {extreme}}}', '{"step": 2, "nll": -1e308}', *GOOD_METRICS]
    (model_copy / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_info(model_copy)
    assert result.exit_code == 0, result.output
    curve = result.stdout.split("loss curves", 1)[1]
    assert "training CE" in curve and "nan" not in curve and "inf" not in curve
    assert "left out" in curve  # ±1e308 cannot be laid out on an axis: said, not drawn


def test_info_reads_around_bytes_that_are_not_utf8(model_copy):
    (model_copy / "metrics.jsonl").write_bytes(b"\xff\xfe\x00garbage\n" + "\n".join(GOOD_METRICS).encode() + b"\n\x80\x81\n")
    result = run_info(model_copy)
    assert result.exit_code == 0, result.output
    assert "training CE" in result.stdout.split("loss curves", 1)[1]


def test_info_with_a_metrics_folder_shows_the_rest(model_copy):
    (model_copy / "metrics.jsonl").unlink()
    (model_copy / "metrics.jsonl").mkdir()
    result = run_info(model_copy)
    assert result.exit_code == 0, result.output
    assert "parameters" in result.stdout and "model.d_model" in result.stdout
    assert "not a regular file" in result.stdout.split("loss curves", 1)[1]  # says why there is no plot


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_info_with_an_unreadable_metrics_file_shows_the_rest(model_copy):
    (model_copy / "metrics.jsonl").chmod(0)
    result = run_info(model_copy)
    assert result.exit_code == 0, result.output
    assert "model.d_model" in result.stdout and "cannot read" in result.stdout.split("loss curves", 1)[1]


def test_plot_of_extreme_values_leaves_them_out_and_says_so():
    text = line_plot({"train": [(0, 1.7976931348623157e308), (10, -1e308), (5, 2.0), (7, 1.0)], "dev": [(5, 0.0)]}, "loss").plain
    assert "2 value(s) beyond what an axis can show were left out" in text
    assert "nan" not in text and "inf" not in text and "e+30" not in text


def test_read_metrics_keeps_only_finite_real_numbers(tmp_path):
    lines = ['{"step": 1, "nll": 2.5, "dev_loss": NaN}', '{"step": 2, "nll": true}', '{"step": 3, "nll": "4"}', '{"step": 4, "nll": 1}']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    assert metric_points(read_metrics(tmp_path), "nll") == [(1, 2.5), (4, 1.0)]
    assert metric_points(read_metrics(tmp_path), "dev_loss") == []


def test_step_axes_are_labelled_in_whole_steps():
    from tt.cli.curves import step_ticks

    assert step_ticks(10, 120) == [(10, "10"), (38, "38"), (65, "65"), (92, "92"), (120, "120")]
    assert step_ticks(0, 2) == [(0, "0"), (1, "1"), (2, "2")]  # no tick twice
    assert step_ticks(5, 5) == [(5, "5")]
    assert step_ticks(0, 12000)[-1] == (12000, "12,000")


def test_the_same_folder_twice_is_two_columns(trained_model, monkeypatch):
    monkeypatch.chdir(trained_model.parent)
    result = runner.invoke(app, ["info", trained_model.name, trained_model.name])
    assert result.exit_code == 0, result.output
    assert f"{trained_model.name} (2)" in result.stdout
