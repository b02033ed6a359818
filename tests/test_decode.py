"""Greedy decoding: the cache changes nothing but speed; batching changes nothing at all."""

from dataclasses import replace

import pytest
import torch

from tt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tt.model.decode import DecodeConfig, greedy_decode, max_output_length
from tt.model.transformer import Transformer


def sources(n=5, vocab=50):
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(4, vocab, (int(torch.randint(2, 9, (1,), generator=generator)),), generator=generator).tolist() + [EOS_ID] for _ in range(n)]


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(5)
    return Transformer(replace(tiny_config, n_layers=2)).eval()


def test_cached_decoding_equals_full_recompute(model):
    src = sources()
    cached = greedy_decode(model, src, use_cache=True, keep_distributions=True)
    full = greedy_decode(model, src, use_cache=False, keep_distributions=True)
    for a, b in zip(cached, full):
        assert a.tokens == b.tokens
        torch.testing.assert_close(torch.tensor(a.token_log_probs), torch.tensor(b.token_log_probs), atol=1e-5, rtol=1e-5)
        for step_a, step_b in zip(a.steps, b.steps):
            torch.testing.assert_close(step_a.log_probs, step_b.log_probs, atol=1e-5, rtol=1e-5)


def test_batching_does_not_change_results(model):
    src = sources(7)
    together = greedy_decode(model, src, DecodeConfig(batch_size=64))
    alone = greedy_decode(model, src, DecodeConfig(batch_size=1))
    for a, b in zip(together, alone):
        assert a.tokens == b.tokens
        # what --precision fp32's help promises: probabilities agree to about 1e-6
        torch.testing.assert_close(torch.tensor(a.token_log_probs).exp(), torch.tensor(b.token_log_probs).exp(), atol=1e-6, rtol=0)


def test_greedy_takes_the_argmax_of_teacher_forced_scores(model):
    src = sources(3)
    for row, hyp in zip(src, greedy_decode(model, src)):
        tgt_in = torch.tensor([[BOS_ID] + hyp.tokens[:-1]])
        src_t = torch.tensor([row])
        log_probs = model(src_t, src_t == 0, tgt_in)[0]
        # Padding and the start token are never picked: the argmax of the rest.
        assert log_probs.index_fill(1, torch.tensor([PAD_ID, BOS_ID]), float("-inf")).argmax(-1).tolist() == hyp.tokens
        chosen = log_probs.gather(1, torch.tensor(hyp.tokens)[:, None]).squeeze(1)
        torch.testing.assert_close(chosen, torch.tensor(hyp.token_log_probs), atol=1e-5, rtol=1e-5)


def test_output_length_is_bounded_by_the_source(model):
    config = DecodeConfig(max_len_ratio=1.0, max_len_extra=2)
    src = sources(4)
    for row, hyp in zip(src, greedy_decode(model, src, config)):
        assert len(hyp.tokens) <= max_output_length(len(row), config, model) == len(row) + 2
        assert EOS_ID not in hyp.tokens[:-1]


def test_prefix_is_forced(model):
    src = sources(2)
    hyps = greedy_decode(model, src, prefixes=[[7, 8, 9], [10]])
    assert hyps[0].tokens[:3] == [7, 8, 9]
    assert hyps[1].tokens[:1] == [10]
