"""The loss: label-smoothed cross-entropy written as KL(q‖p) + H(q)."""

import pytest
import torch
import torch.nn.functional as F

from tt.model.loss import dense_loss, label_smoothed_loss, smoothed_target_entropy, smoothed_targets

PAD = 0


def random_log_probs(tokens=7, vocab=11):
    return torch.randn(tokens, vocab).log_softmax(-1)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_smoothed_rows_sum_to_one(smoothing):
    q = smoothed_targets(torch.tensor([1, 4, 9]), 11, smoothing)
    torch.testing.assert_close(q.sum(-1), torch.ones(3))
    assert torch.all(q.argmax(-1) == torch.tensor([1, 4, 9]))


def test_no_smoothing_equals_cross_entropy():
    log_probs = random_log_probs()
    target = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    parts = label_smoothed_loss(log_probs, target, 0.0, PAD)
    expected = F.cross_entropy(log_probs, target, reduction="sum")
    torch.testing.assert_close(parts.kl, expected)
    torch.testing.assert_close(parts.nll, expected)
    torch.testing.assert_close(parts.entropy, torch.tensor(0.0))


@pytest.mark.parametrize("smoothing", [0.05, 0.1, 0.4])
def test_closed_form_matches_the_definitions(smoothing):
    log_probs = random_log_probs()
    target = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    parts = label_smoothed_loss(log_probs, target, smoothing, PAD)
    q = smoothed_targets(target, log_probs.shape[-1], smoothing)
    cross_entropy, entropy, kl = dense_loss(log_probs, q)
    torch.testing.assert_close(parts.cross_entropy, cross_entropy.sum())
    torch.testing.assert_close(parts.entropy, entropy.sum())
    torch.testing.assert_close(parts.kl, kl.sum())
    # The identity: H(q, p) = KL(q‖p) + H(q), and KL is never negative.
    torch.testing.assert_close(parts.cross_entropy, parts.kl + parts.entropy)
    assert torch.all(kl >= -1e-6)
    # torch's own label smoothing spreads ε the same way: ε/V over all classes.
    torch.testing.assert_close(
        parts.cross_entropy, F.cross_entropy(log_probs, target, reduction="sum", label_smoothing=smoothing)
    )


def test_kl_is_zero_when_prediction_equals_target():
    q = smoothed_targets(torch.tensor([2, 5]), 9, 0.2)
    parts = label_smoothed_loss(q.log(), torch.tensor([2, 5]), 0.2, PAD)
    assert abs(float(parts.kl)) < 1e-5


def test_padding_counts_for_nothing():
    log_probs = random_log_probs()
    target = torch.tensor([1, 2, 3, PAD, PAD, 6, PAD])
    parts = label_smoothed_loss(log_probs, target, 0.1, PAD)
    real = target != PAD
    alone = label_smoothed_loss(log_probs[real], target[real], 0.1, PAD)
    assert parts.n_tokens == 4
    torch.testing.assert_close(parts.kl, alone.kl)


def test_entropy_of_smoothed_target_by_hand():
    vocab, eps = 5, 0.25
    top, rest = 1 - eps + eps / vocab, eps / vocab
    expected = -(top * torch.log(torch.tensor(top)) + (vocab - 1) * rest * torch.log(torch.tensor(rest)))
    assert smoothed_target_entropy(vocab, eps) == pytest.approx(float(expected), rel=1e-6)
