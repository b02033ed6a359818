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
