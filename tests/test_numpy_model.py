"""The quick path of `tt translate`: the NumPy copy of the model must be the PyTorch model.

Held to it on names, shapes and checksum, on every step's log-probabilities and greedy
output for each architecture switch, and end to end through the command: same text as the
full path, without torch imported, and the same one-line errors for a damaged folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tt.cli.main import app
from tt.model.checkpoint import WEIGHTS, model_digest
from tt.model.model_record import expected_shapes, tied_groups
from tt.model.decode import DecodeConfig, greedy_decode
from tt.model.numpy_model import NumpyTransformer, arrays_digest, open_quick_model
from tt.model.transformer import ModelConfig, Transformer

BASE = ModelConfig(src_vocab_size=40, tgt_vocab_size=40, d_model=16, n_heads=2, d_ff=24, n_layers=2, dropout=0.0, max_positions=64)
VARIANTS = {
    "post-LN, tied": BASE,
    "pre-LN": replace(BASE, pre_norm=True),
    "no residual": replace(BASE, residual=False),
    "separate vocabularies": replace(BASE, tgt_vocab_size=30, tie_embeddings=False),
    "Marian-like": replace(BASE, tgt_vocab_size=30, tie_embeddings=False, tie_output=True, activation="silu", output_bias=True, scale_embedding=False, start_id=0),
}


def numpy_weights(model: Transformer) -> dict[str, np.ndarray]:
    return {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}


def random_model(config: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(config).eval()
    with torch.no_grad():  # norms and biases away from 1 and 0, so that a slip in either shows
        for name, param in model.named_parameters():
            if param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.3)
    return model


@pytest.mark.parametrize("name", VARIANTS)
def test_names_shapes_ties_and_checksum_match_the_pytorch_model(name):
    config = VARIANTS[name]
    model = random_model(config)
    assert expected_shapes(config) == {key: tuple(t.shape) for key, t in model.state_dict().items()}
    torch_groups = sorted(sorted(names) for names in _tied(model) if len(names) > 1)
    assert sorted(tied_groups(config)) == torch_groups
    assert arrays_digest(numpy_weights(model)) == model_digest(model)


def _tied(model):
    groups: dict[int, list[str]] = {}
    for key, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(key)
    return list(groups.values())


@pytest.mark.parametrize("name", VARIANTS)
def test_greedy_tokens_and_log_probs_match_the_pytorch_model(name):
    config = VARIANTS[name]
    model = random_model(config, seed=1)
    quick = NumpyTransformer(config, numpy_weights(model))
    generator = np.random.default_rng(2)
    special = {config.pad_id, config.start_id, config.eos_id}
    for length in (1, 3, 9):
        src = [int(i) for i in generator.integers(4, config.src_vocab_size, size=length)] + [config.eos_id]
        src = [i if i not in special else 5 for i in src[:-1]] + [config.eos_id]
        limit = 12
        expected = greedy_decode(model, [src], DecodeConfig(max_len_ratio=0.0, max_len_extra=limit))[0]
        tokens, log_probs = quick.greedy(src, limit)
        assert tokens == expected.tokens
        np.testing.assert_allclose(log_probs, expected.token_log_probs, atol=2e-5)


def test_the_command_answers_without_torch_and_as_the_full_path_does(trained_model):
    sentences = ["我有三本书。", "", "你有五只猫吗？", "我" * 40]
    quick = subprocess.run(
        [sys.executable, "-c", QUICK_RUN, str(trained_model), *sentences], capture_output=True, text=True, timeout=120,
    )
    assert quick.returncode == 0, quick.stderr
    assert quick.stderr.splitlines()[-1] == "torch imported: False"
    # stdin takes the full path (a pipe may be long and is decoded in batches)
    full = CliRunner().invoke(app, ["translate", "--model", str(trained_model)], input="\n".join(sentences) + "\n")
    assert full.exit_code == 0, full.output
    assert quick.stdout == full.stdout
    assert len(quick.stdout.splitlines()) == len(sentences) and quick.stdout.splitlines()[1] == ""


QUICK_RUN = """
import sys
from tt.cli.main import app
try:
    app(["translate", "--model", sys.argv[1], *sys.argv[2:]])
except SystemExit as stop:
    assert not stop.code, stop.code
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def test_output_file_is_written_whole(trained_model, tmp_path):
    out = tmp_path / "out.txt"
    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--output", str(out), "我有三本书。", "你有五只猫吗？"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_damaged_weights_give_the_checksum_error(trained_model, tmp_path):
    folder = Path(shutil.copytree(trained_model, tmp_path / "model"))
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-5] ^= 0x55  # a flipped bit in the last tensor's bytes: the header still reads
    (folder / WEIGHTS).write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["translate", "--model", str(folder), "我有三本书。"])
    assert result.exit_code == 1
    assert "do not match their checksum" in result.output and "Traceback" not in result.output


def test_a_config_that_disagrees_with_the_weights_is_one_line(trained_model, tmp_path):
    folder = Path(shutil.copytree(trained_model, tmp_path / "model"))
    record = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    record["model"]["d_ff"] = 48
    (folder / "config.json").write_text(json.dumps(record), encoding="utf-8")
    result = CliRunner().invoke(app, ["translate", "--model", str(folder), "我有三本书。"])
    assert result.exit_code == 1
    assert "config.json implies" in result.output and "Traceback" not in result.output


def test_weights_in_another_precision_take_the_full_path(trained_model, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = Path(shutil.copytree(trained_model, tmp_path / "model"))
    tensors = load_file(str(folder / WEIGHTS))
    save_file({name: array.astype(np.float16) for name, array in tensors.items()}, str(folder / WEIGHTS))
    assert open_quick_model(folder) is None
