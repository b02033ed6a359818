"""The loss: label-smoothed cross-entropy written as KL(q‖p) + H(q)."""

import pytest
import torch
import torch.nn.functional as F

from tt.model.loss import (
    TeacherForcedLoss, dense_loss, label_smoothed_loss, label_smoothed_loss_from_logits, loss_in_chunks,
    smoothed_target_entropy, smoothed_targets,
)

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


def test_loss_in_chunks_gives_the_sums_and_gradients_of_the_whole():
    torch.manual_seed(0)
    hidden = torch.randn(10, 6, requires_grad=True)
    head = torch.nn.Linear(6, 13)
    target = torch.tensor([3, 0, 5, 12, 1, 0, 7, 7, 2, 9])  # padding (0) among them

    def loss_and_grad(parts_of):
        hidden.grad = None
        head.zero_grad()
        parts = parts_of()
        parts.kl.backward()
        return parts, hidden.grad.clone(), head.weight.grad.clone()

    whole, whole_hidden_grad, whole_weight_grad = loss_and_grad(
        lambda: label_smoothed_loss(head(hidden).log_softmax(-1), target, 0.1, PAD)
    )
    chunked, chunked_hidden_grad, chunked_weight_grad = loss_and_grad(
        lambda: loss_in_chunks(head, hidden, target, 0.1, PAD, rows=3)  # logits in, 3 + 3 + 3 + 1 positions
    )
    assert chunked.n_tokens == whole.n_tokens == 8
    for name in ("kl", "cross_entropy", "entropy", "nll"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))
    torch.testing.assert_close(chunked_hidden_grad, whole_hidden_grad)
    torch.testing.assert_close(chunked_weight_grad, whole_weight_grad)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_written_out_gradient_is_autograds(smoothing):
    """SmoothedKL's backward (p − q) gives what autograd finds through the log-softmax, for
    every output's gradient: Σ KL and Σ H(q, p) weigh p − q, Σ −ln p(y) weighs p − onehot(y)."""
    torch.manual_seed(0)
    logits = torch.randn(7, 11, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3, 0, 5, 10, 1, 0, 7])  # two padding positions
    weights = {"kl": 0.7, "cross_entropy": -1.3, "nll": 2.1}  # any mix of the three sums

    def loss_and_grad(parts_of):
        logits.grad = None
        parts = parts_of()
        sum(w * getattr(parts, name) for name, w in weights.items()).backward()
        return parts, logits.grad.clone()

    expected, expected_grad = loss_and_grad(lambda: label_smoothed_loss(logits.log_softmax(-1), target, smoothing, PAD))
    written, written_grad = loss_and_grad(lambda: label_smoothed_loss_from_logits(logits, target, smoothing, PAD))
    for name in ("kl", "cross_entropy", "entropy", "nll"):
        torch.testing.assert_close(getattr(written, name).double(), getattr(expected, name).double())
    assert written.n_tokens == expected.n_tokens == 5
    torch.testing.assert_close(written_grad, expected_grad)
    assert written_grad[target == PAD].abs().sum() == 0  # padding learns nothing
    # The KL gradient is p − q on its own: each real row sums to 0 (p and q both sum to 1).
    logits.grad = None
    label_smoothed_loss_from_logits(logits, target, smoothing, PAD).kl.backward()
    torch.testing.assert_close(logits.grad.sum(-1), torch.zeros(7, dtype=torch.float64))
    assert (logits.grad[1:2] == 0).all() and logits.grad[0].abs().sum() > 0


def test_written_out_gradient_keeps_the_logits_dtype():
    """bfloat16 logits (autocast) get a bfloat16 gradient; the loss itself is float32."""
    torch.manual_seed(0)
    logits = torch.randn(4, 9).bfloat16().requires_grad_()
    parts = label_smoothed_loss_from_logits(logits, torch.tensor([1, 2, 3, 4]), 0.1, PAD)
    assert parts.kl.dtype == torch.float32
    parts.kl.backward()
    assert logits.grad.dtype == torch.bfloat16
    reference = logits.detach().float().requires_grad_()
    label_smoothed_loss(reference.log_softmax(-1), torch.tensor([1, 2, 3, 4]), 0.1, PAD).kl.backward()
    torch.testing.assert_close(logits.grad.float(), reference.grad, atol=1e-2, rtol=1e-2)


def test_teacher_forced_loss_counts_only_real_targets(tiny_config):
    from tt.model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(tiny_config).eval()
    src = torch.randint(4, tiny_config.src_vocab_size, (3, 6))
    src[0, 4:] = PAD
    tgt_in = torch.randint(4, tiny_config.tgt_vocab_size, (3, 5))
    tgt_out = torch.randint(4, tiny_config.tgt_vocab_size, (3, 5))
    tgt_out[1, 2:] = PAD
    expected = label_smoothed_loss(model(src, src == PAD, tgt_in), tgt_out, 0.1, PAD)  # every position, padding zeroed
    parts = TeacherForcedLoss(model, 0.1, PAD)(src, src == PAD, tgt_in, tgt_out)
    assert parts.n_tokens == expected.n_tokens == 12
    torch.testing.assert_close(parts.kl, expected.kl)
    torch.testing.assert_close(parts.nll, expected.nll)
