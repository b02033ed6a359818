"""`tt explain`: the numbers it shows agree with their definitions and with training's loss."""

import math

import pytest
from typer.testing import CliRunner

from tt.cli.explain_command import explain
from tt.cli.main import app
from tt.model.checkpoint import load_model_folder

runner = CliRunner()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_identity_and_definitions(trained_model, smoothing):
    model, tokenizer, _ = load_model_folder(trained_model)
    e = explain(model, tokenizer, "我有三本书。", "I have three books.", position=2, smoothing=smoothing)
    assert e.loss["cross_entropy"] == pytest.approx(e.loss["kl"] + e.loss["entropy"], abs=1e-5)
    for key in ("cross_entropy", "kl", "entropy"):
        assert e.loss[key] == pytest.approx(e.definitions[key], abs=1e-4)
    assert e.loss["nll"] == pytest.approx(-math.log(e.target_prob), rel=1e-5)
    if smoothing == 0:
        assert e.loss["entropy"] == pytest.approx(0.0, abs=1e-6)
        assert e.loss["kl"] == pytest.approx(e.loss["nll"], abs=1e-5)
    probs = [p for _, _, p in e.top]
    assert probs == sorted(probs, reverse=True)
    # softmax of the logits shown: p_i / p_j = exp(z_i − z_j)
    (_, z0, p0), (_, z1, p1) = e.top[:2]
    assert p0 / p1 == pytest.approx(math.exp(z0 - z1), rel=1e-4)
    assert (e.target_rank == 1) == (e.top[0][0] == e.target_piece)


def test_residual_stream_rows(trained_model):
    model, tokenizer, _ = load_model_folder(trained_model)
    e = explain(model, tokenizer, "我有三本书。", "I have three books.", position=1, smoothing=0.1)
    names = [row[0] for row in e.residual]
    assert names == [
        f"decoder.{layer}.{part}" for layer in range(model.config.n_layers) for part in ("self-attention", "cross-attention", "feed-forward")
    ]
    for _, x, fx, total, out in e.residual:
        assert total <= x + fx + 1e-4  # triangle inequality: |x + f(x)| ≤ |x| + |f(x)|
        assert out == pytest.approx(math.sqrt(model.config.d_model), rel=0.2)  # LayerNorm output, unit variance


def test_explain_command(trained_model):
    result = runner.invoke(app, ["explain", "--model", str(trained_model), "--src", "我有三本书。", "--ref", "I have three books.", "--position", "2"])
    assert result.exit_code == 0, result.output
    assert "KL(q‖p)" in result.stdout and "H(q, p) = KL(q‖p) + H(q)" in result.stdout
    from tt.model.checkpoint import load_model_folder

    _, tokenizer, _ = load_model_folder(trained_model)
    pieces = [tokenizer.tgt_piece(i) for i in tokenizer.encode_tgt("I have three books.")]
    marked = " ".join(f"[{piece}]" if i == 1 else piece for i, piece in enumerate(pieces))
    assert result.stdout.splitlines()[0].strip() == marked  # the explained position, visible in a pipe too
    bad = runner.invoke(app, ["explain", "--model", str(trained_model), "--src", "我", "--ref", "I", "--position", "9"])
    assert bad.exit_code == 1 and "--position 9" in bad.stderr


@pytest.mark.parametrize("side", ["--src", "--ref"])
def test_a_side_longer_than_the_models_positions_is_one_line(trained_model, side):
    model, _, _ = load_model_folder(trained_model)
    long = "我有三本书。" if side == "--src" else "I have three books."
    texts = {"--src": "我有三本书。", "--ref": "I have three books.", side: long * model.config.max_positions}
    result = runner.invoke(app, ["explain", "--model", str(trained_model), "--src", texts["--src"], "--ref", texts["--ref"]])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and side in lines[0] and f"{model.config.max_positions:,} positions" in lines[0], result.stderr
