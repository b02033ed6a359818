"""The model: shapes, causality, padding, residual/LayerNorm placement, and fused vs explicit attention."""

import math
from dataclasses import replace

import pytest
import torch

from tt.model.attention import attention_with_weights, padding_allowed
from tt.model.recording import recording
from tt.model.model_config import ACTIVATION_NAMES
from tt.model.transformer import ACTIVATIONS, Transformer, count_parameters, sinusoidal_positions


def make_inputs(batch=3, src_len=6, tgt_len=5, vocab=50):
    src = torch.randint(4, vocab, (batch, src_len))
    src[0, 4:] = 0  # padding at the end of the first sentence
    tgt = torch.randint(4, vocab, (batch, tgt_len))
    return src, src == 0, tgt


def test_output_is_a_distribution(tiny_config):
    model = Transformer(tiny_config).eval()
    src, mask, tgt = make_inputs()
    log_probs = model(src, mask, tgt)
    assert log_probs.shape == (3, 5, tiny_config.tgt_vocab_size)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 5))


@pytest.mark.parametrize("pre_norm", [False, True])
def test_a_later_target_token_never_moves_earlier_outputs(tiny_config, pre_norm):
    model = Transformer(replace(tiny_config, pre_norm=pre_norm)).eval()
    src, mask, tgt = make_inputs()
    changed = tgt.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 46 + 4
    before, after = model(src, mask, tgt), model(src, mask, changed)
    torch.testing.assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_padding_does_not_leak(tiny_config):
    model = Transformer(tiny_config).eval()
    src, mask, tgt = make_inputs()
    other = src.clone()
    other[0, 4:] = 7  # change only what the mask hides
    torch.testing.assert_close(model(src, mask, tgt)[0], model(other, mask, tgt)[0])


def test_fused_attention_equals_the_formula():
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    allowed = padding_allowed(torch.tensor([[False] * 6, [False] * 4 + [True] * 2]))
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    explicit, weights = attention_with_weights(q, k, v, allowed, causal=False)
    torch.testing.assert_close(fused, explicit)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4))
    assert torch.all(weights[1, :, :, 4:] == 0)


def test_causal_formula_matches_fused():
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    explicit, weights = attention_with_weights(q, k, v, None, causal=True)
    torch.testing.assert_close(fused, explicit)
    assert torch.all(weights[0, 0].triu(1) == 0)


def test_post_ln_output_of_each_sublayer_is_normalized(tiny_config):
    model = Transformer(tiny_config).eval()
    src, mask, _ = make_inputs()
    with recording(model, residual=True) as seen:
        model.encode(src, mask)
    assert [view.name for view in seen.residual] == ["encoder.0.self-attention", "encoder.0.feed-forward"]
    for item in seen.residual:
        torch.testing.assert_close(item.total, item.x + item.fx)  # the residual sum
        # LayerNorm(x + f(x)) with its initial weights: mean 0, variance 1 per position
        torch.testing.assert_close(item.out.mean(-1), torch.zeros(item.out.shape[:-1]), atol=1e-5, rtol=0)


def test_tied_embeddings_share_one_matrix(tiny_config):
    model = Transformer(tiny_config)
    assert model.project.weight is model.src_embed.weight is model.tgt_embed.weight
    untied = Transformer(replace(tiny_config, tgt_vocab_size=60))
    assert untied.tgt_embed is not untied.src_embed
    assert untied.project.weight is not untied.tgt_embed.weight
    assert count_parameters(untied) > count_parameters(model)


def test_sinusoidal_positions_follow_the_formula():
    table = sinusoidal_positions(10, 8)
    assert table[3, 2] == pytest.approx(math.sin(3 / 10000 ** (2 / 8)), abs=1e-6)
    assert table[3, 3] == pytest.approx(math.cos(3 / 10000 ** (2 / 8)), abs=1e-6)
    assert torch.all(table[0, 1::2] == 1)


def test_pre_norm_residual_view_is_the_plain_sum(tiny_config):
    model = Transformer(replace(tiny_config, pre_norm=True)).eval()
    src, mask, _ = make_inputs()
    with recording(model, residual=True) as seen:
        memory = model.encode(src, mask)
    assert len(seen.residual) == 2
    for item in seen.residual:
        torch.testing.assert_close(item.out, item.x + item.fx)  # pre-LN: nothing normalizes the sum
    # the encoder's own final norm comes after the last sub-layer's sum
    torch.testing.assert_close(memory, model.encoder_norm(seen.residual[-1].out))


def test_recording_leaves_no_hooks_behind(tiny_config):
    model = Transformer(tiny_config).eval()
    with recording(model, attention=True, layers=True, residual=True):
        pass
    assert not any(m._forward_hooks for m in model.modules())
    assert not any(layer.cross_attn.show_weights for layer in model.decoder)


def test_dropout_keeps_the_expected_value_and_scales_the_gradient():
    from tt.model.transformer import Dropout

    torch.manual_seed(0)
    dropout = Dropout(0.25)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005  # each value kept with probability 1 − p
    torch.testing.assert_close(y[kept], torch.full((int(kept.sum()),), 1 / 0.75))  # kept values scaled by 1/(1 − p)
    assert abs(y.mean().item() - 1.0) < 0.01  # so the expected value is unchanged
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)  # the gradient flows through the same mask
    dropout.eval()
    assert dropout(x) is x  # evaluation: the identity


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_each_value_with_probability_1_minus_p_from_both_halves_of_each_random_word(p):
    from tt.model.transformer import keep_mask

    torch.manual_seed(1)
    keep = keep_mask(torch.Size([301, 999]), p, torch.device("cpu"))  # an odd count: the last word is half used
    assert keep.shape == (301, 999) and keep.dtype == torch.bool
    flat = keep.view(-1).float()
    # values 0, 2, 4 … come from one half of a word, 1, 3, 5 … from the other: each with its own threshold
    for half in (flat[0::2], flat[1::2]):
        assert abs(half.mean().item() - (1 - p)) < 0.005
    # two values from the same word are independent: both kept with probability (1 − p)²
    pairs = flat[: flat.numel() // 2 * 2].view(-1, 2)
    assert abs((pairs[:, 0] * pairs[:, 1]).mean().item() - (1 - p) ** 2) < 0.005


def test_dropout_in_bfloat16_keeps_the_dtype_and_the_scale():
    from tt.model.transformer import Dropout

    torch.manual_seed(0)
    y = Dropout(0.5)(torch.ones(10_000, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert set(y.unique().tolist()) == {0.0, 2.0}


def test_the_config_checker_knows_every_activation_the_model_has():
    # tt.model.configs checks config.json against ACTIVATION_NAMES without importing torch
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
