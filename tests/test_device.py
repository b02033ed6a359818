"""--device and --precision: what "auto" picks, what a missing GPU says, and that the CPU path works."""

from __future__ import annotations

import sys

import pytest
import torch
from typer.testing import CliRunner

from tt.cli.main import app
from tt.data.errors import UserError
from tt.model.device import autocast, cpu_bf16_supported, resolve_device, resolve_precision

runner = CliRunner()


def test_auto_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="--device cuda: torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="expected one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_auto_precision_is_bf16_exactly_where_supported(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_bf16_supported() else "fp32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(UserError):
        resolve_precision("fp16", cpu)


def test_bf16_autocast_runs_matmuls_in_bf16_and_fp32_does_not():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert (a @ b).dtype == torch.float32


@pytest.mark.parametrize("command", ["translate", "score", "eval"])
def test_device_cuda_without_a_gpu_is_one_line(monkeypatch, trained_model, corpus_file, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = {
        "translate": ["translate", "我有三本书。"],
        "score": ["score", "--src", "我有三本书。", "--ref", "I have three books."],
        "eval": ["eval", str(corpus_file)],
    }[command]
    result = runner.invoke(app, [*args, "--model", str(trained_model), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: --device cuda: torch sees no CUDA GPU here (is this torch build a CPU-only one?)"


def test_train_with_device_cuda_without_a_gpu_writes_nothing(monkeypatch, tmp_path, corpus_file):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["train", str(corpus_file), "--out", str(tmp_path / "m"), "--device", "cuda"])
    assert result.exit_code == 1 and "--device cuda" in result.stderr
    assert not (tmp_path / "m").exists()


def test_translate_on_cpu_with_auto_precision_matches_the_default_tokens(trained_model):
    plain = runner.invoke(app, ["translate", "--model", str(trained_model), "--device", "cpu", "我有三本书。"])
    auto = runner.invoke(app, ["translate", "--model", str(trained_model), "--device", "auto", "--precision", "fp32", "我有三本书。"])
    assert plain.exit_code == 0 and auto.exit_code == 0
    assert plain.stdout == auto.stdout


def test_training_keeps_freed_memory_where_glibc_allows():
    """mallopt accepts both thresholds on glibc (Linux); elsewhere the call does nothing."""
    import platform

    from tt.model.allocator import keep_freed_memory

    assert keep_freed_memory() is (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")
