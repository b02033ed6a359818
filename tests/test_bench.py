"""`tt bench`'s building blocks (the full run takes minutes and is a benchmark, not a test)."""

from pathlib import Path

import pytest
import torch

from tt.cli.bench_command import child_peak_rss_mb
from tt.model.speed import fixed_length_decode, fixed_length_sources, flops_per_target_token
from tt.data.tokenizer import EOS_ID
from tt.model.transformer import ModelConfig, Transformer


def test_flops_per_token_by_hand():
    config = ModelConfig(tgt_vocab_size=10, d_model=4, d_ff=8, n_layers=1)
    encoder = 4 * 16 + 2 * 32  # q, k, v, out projections + the two feed-forward matrices
    decoder = 8 * 16 + 2 * 32  # self- and cross-attention + feed-forward
    assert flops_per_target_token(config, src_per_tgt=0.5) == 6 * (encoder * 0.5 + decoder + 4 * 10)


def test_fixed_length_decoding_makes_exactly_the_tokens_it_counts(tiny_config):
    torch.manual_seed(0)
    model = Transformer(tiny_config).eval()
    src = fixed_length_sources(tiny_config.src_vocab_size, sentences=70, src_len=6)
    assert [len(row) for row in src] == [6] * 70 and all(row[-1] == EOS_ID for row in src)
    hyps, seconds = fixed_length_decode(model, src, out_len=5)
    assert [len(h.tokens) for h in hyps] == [5] * 70  # </s> is never chosen, the limit ends each one
    assert all(EOS_ID not in h.tokens for h in hyps) and seconds > 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc")
def test_child_peak_memory_is_its_own(tmp_path):
    peak, seconds = child_peak_rss_mb(["--help"], str(tmp_path))
    # A bare `tt --help` needs some tens of MB; not this test process's size.
    assert peak is not None and 10 < peak < 1500 and seconds > 0


def test_train_speed_counts_real_tokens_and_padding(tiny_config):
    from tt.model.speed import train_speed

    same = train_speed(tiny_config, [[5, 6, 3]] * 60, [[12, 13, 3]] * 60, batch_tokens=64, precision="fp32", seconds=0.2, device="cpu")
    assert same["steps"] >= 1 and same["padding"] == 0  # equal lengths: no padding at all
    src = [[5, 6, 7, 3], [5, 6, 3], [8, 9, 10, 11, 3]] * 20
    tgt = [[12, 13, 3], [14, 3], [15, 16, 17, 3]] * 20
    mixed = train_speed(tiny_config, src, tgt, batch_tokens=64, precision="fp32", seconds=0.2, device="cpu")
    assert 0 < mixed["padding"] < 1 - 2 / 4  # some rows are padded, never more than 2 of the longest's 4


def test_a_failing_child_is_one_user_error_with_its_last_line(monkeypatch, tmp_path):
    import subprocess

    import tt.cli.bench_command as bench_command
    from tt.data.errors import UserError

    def failed(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "warming up\nerror: --out m: disk full\nTT_PEAK_RSS_KB 1234\n")

    monkeypatch.setattr(bench_command.subprocess, "run", failed)
    with pytest.raises(UserError, match=r"`tt train c.tsv` exited with 1: error: --out m: disk full$"):
        child_peak_rss_mb(["train", "c.tsv"], str(tmp_path))
    with pytest.raises(UserError, match="`tt --help` exited with 1: error: --out m: disk full$"):
        bench_command._wall(["--help"], str(tmp_path))


def test_start_up_is_timed_without_a_tt_script_beside_python(monkeypatch, tmp_path):
    """An install without scripts (pip install --target) still times `python -m tt.cli`."""
    import tt.cli.bench_command as bench_command

    monkeypatch.setattr(bench_command.sys, "executable", str(tmp_path / "python"))  # no tt beside it
    monkeypatch.setattr(bench_command.shutil, "which", lambda name: None)
    assert bench_command.tt_command() == [str(tmp_path / "python"), "-m", "tt.cli"]
    monkeypatch.setattr(bench_command.shutil, "which", lambda name: "/somewhere/bin/tt")
    assert bench_command.tt_command() == ["/somewhere/bin/tt"]


def test_the_matmul_row_names_the_size_measured():
    from rich.console import Console

    from tt.cli.bench_command import bench_table
    from tt.model.speed import matmul_size

    results = {
        "threads": 2, "device": "a GPU", "data": "synthetic", "matmul_size": matmul_size(torch.device("cuda")),
        "matmul_fp32_gflops": 100.0, "matmul_bf16_gflops": 200.0, "reference_flops_per_token": 1e6, "default_flops_per_token": 1e6,
        "decode_fixed_tok_s": 1.0, "decode_cache_speedup": 2.0, "train_peak_rss_mb": 1.0, "translate_peak_rss_mb": 1.0,
        "startup_help_s": 1.0, "startup_translate_s": 1.0,
        **{f"decode_beam{b}_batch{n}_{unit}": 1.0 for b in (1, 5) for n in (1, 64) for unit in ("sentences_s", "tok_s")},
    }
    console = Console(record=True, width=200)
    console.print(bench_table(results))
    text = console.export_text()
    assert "best of 8192³" in text and "1024³" not in text
    assert matmul_size(torch.device("cpu")) == 1024


def test_the_matmul_peak_is_the_best_shape_measured(monkeypatch):
    from tt.model import speed
    from tt.model.transformer import ModelConfig

    measured = {(1024, 1024, 1024): 150.0, (4096, 256, 1024): 180.0, (4096, 1024, 256): 170.0}
    monkeypatch.setattr(speed, "matmul_gflops", lambda dtype, device, shape, seconds: measured[shape])
    config = ModelConfig(d_model=256, n_heads=4, d_ff=1024)
    assert speed.matmul_peak(torch.float32, config, 4096, torch.device("cpu")) == (180.0, "4096×256×1024")
