"""Beam search: exhaustive on a tiny model, greedy at beam 1, n-best in order."""

import itertools

import pytest
import torch

from tt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tt.model.decode import DecodeConfig, greedy_decode
from tt.model.beam import BeamConfig, beam_decode, length_penalty
from tt.model.transformer import ModelConfig, Transformer

VOCAB = 6  # pad, unk, bos, eos and two words: every sequence can be listed
CHOOSABLE = [t for t in range(VOCAB) if t not in (PAD_ID, BOS_ID)]  # decoding never picks padding or the start


@pytest.fixture
def model():
    torch.manual_seed(11)
    config = ModelConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0)
    return Transformer(config).eval()


@torch.no_grad()
def sequence_log_prob(model, src, tokens):
    src_t = torch.tensor([src])
    tgt_in = torch.tensor([[2] + tokens[:-1]])
    log_probs = model(src_t, src_t == 0, tgt_in)[0]
    return float(log_probs.gather(1, torch.tensor(tokens)[:, None]).sum())


def all_outputs(limit):
    """Every output the decoder can produce: ends in EOS, or stops at the length limit."""
    for length in range(1, limit + 1):
        for body in itertools.product(CHOOSABLE, repeat=length - 1):
            if EOS_ID in body:
                continue
            yield list(body) + [EOS_ID]
            if length == limit:
                for last in CHOOSABLE:
                    if last != EOS_ID:
                        yield list(body) + [last]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_wide_beam_finds_the_brute_force_best(model, alpha):
    src = [4, 5, 4, EOS_ID]
    config = DecodeConfig(max_len_ratio=0.0, max_len_extra=3)
    brute = sorted(
        ((sequence_log_prob(model, src, out) / length_penalty(len(out), alpha), out) for out in all_outputs(3)),
        key=lambda item: item[0],
        reverse=True,
    )
    [ranked] = beam_decode(model, [src], BeamConfig(beam=200, alpha=alpha, n_best=5), config)
    assert [hyp.tokens for _, hyp in ranked] == [out for _, out in brute[:5]]
    for (score, hyp), (expected, _) in zip(ranked, brute):
        assert score == pytest.approx(expected, abs=1e-4)
        assert hyp.log_prob == pytest.approx(sequence_log_prob(model, src, hyp.tokens), abs=1e-4)


def test_beam_one_is_greedy(model):
    torch.manual_seed(3)
    sources = [torch.randint(4, VOCAB, (n,)).tolist() + [EOS_ID] for n in (2, 5, 3, 7)]
    greedy = greedy_decode(model, sources)
    beamed = beam_decode(model, sources, BeamConfig(beam=1, alpha=0.6))
    for g, [(_, b)] in zip(greedy, beamed):
        assert b.tokens == g.tokens
        assert b.token_log_probs == pytest.approx(g.token_log_probs, abs=1e-5)


def test_n_best_is_sorted_and_distinct(model):
    [ranked] = beam_decode(model, [[4, 5, EOS_ID]], BeamConfig(beam=4, alpha=0.6, n_best=3))
    scores = [score for score, _ in ranked]
    assert len(ranked) == 3 and scores == sorted(scores, reverse=True)
    assert len({tuple(h.tokens) for _, h in ranked}) == 3


def test_batching_sentences_does_not_change_beams(model):
    sources = [[4, 5, EOS_ID], [5, 5, 4, 4, EOS_ID], [4, EOS_ID]]
    together = beam_decode(model, sources, BeamConfig(beam=3), DecodeConfig(batch_size=64))
    alone = [beam_decode(model, [s], BeamConfig(beam=3))[0] for s in sources]
    for a, b in zip(together, alone):
        assert a[0][1].tokens == b[0][1].tokens
        assert a[0][0] == pytest.approx(b[0][0], abs=1e-5)
