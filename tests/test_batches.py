"""tt.data.batches: padded batches, token-bucket planning, and a resumable stream of epochs."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from tt.data.batches import BatchStream, make_batch, plan_batches
from tt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def toy_corpus(n: int = 60, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """Rows of varied length, each ending in EOS; source row i starts with the id 10 + i."""
    rng = random.Random(seed)
    src = [[10 + i] + [rng.randrange(4, 50) for _ in range(rng.randrange(0, 12))] + [EOS_ID] for i in range(n)]
    tgt = [[rng.randrange(4, 50) for _ in range(rng.randrange(0, 15))] + [EOS_ID] for _ in range(n)]
    return src, tgt


def row_ids(batch) -> list[int]:
    return [int(first) - 10 for first in batch.src[:, 0]]


# ---- make_batch


def test_make_batch_shapes_and_padding():
    """Rows are padded to the longest; tgt_in and tgt_out share a shape."""
    src_ids = [[5, 6, EOS_ID], [7, EOS_ID], [8, 9, 10, 11, EOS_ID]]
    tgt_ids = [[12, EOS_ID], [13, 14, 15, EOS_ID], [EOS_ID]]
    batch = make_batch(src_ids, tgt_ids)
    assert batch.src.shape == (3, 5)
    assert batch.tgt_in.shape == batch.tgt_out.shape == (3, 4)
    assert batch.src_pad_mask.shape == batch.src.shape
    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == torch.long
    for i, row in enumerate(src_ids):
        assert batch.src[i, : len(row)].tolist() == row
        assert (batch.src[i, len(row) :] == PAD_ID).all()


def test_tgt_in_is_bos_then_tgt_out_shifted():
    """Teacher forcing: tgt_in = <s> y1 … yn, tgt_out = y1 … yn </s>, padding after both."""
    tgt_ids = [[12, 13, EOS_ID], [14, EOS_ID], [15, 16, 17, 18, EOS_ID]]
    batch = make_batch([[5, EOS_ID]] * 3, tgt_ids)
    for i, row in enumerate(tgt_ids):
        n = len(row)
        assert batch.tgt_out[i, :n].tolist() == row
        assert batch.tgt_in[i, 0] == BOS_ID
        assert batch.tgt_in[i, 1:n].tolist() == row[:-1]
        assert (batch.tgt_in[i, n:] == PAD_ID).all()
        assert (batch.tgt_out[i, n:] == PAD_ID).all()


def test_src_pad_mask_true_exactly_at_padding():
    src_ids = [[5, 6, EOS_ID], [7, EOS_ID], [8, 9, 10, 11, EOS_ID]]
    batch = make_batch(src_ids, [[EOS_ID]] * 3)
    positions = torch.arange(batch.src.shape[1])
    expected = torch.stack([positions >= len(row) for row in src_ids])
    assert torch.equal(batch.src_pad_mask, expected)


def test_target_tokens_counts_non_pad():
    """Every real target token counts, EOS included; padding does not (the loss's N)."""
    tgt_ids = [[12, 13, EOS_ID], [EOS_ID], [14, 15, 16, 17, EOS_ID]]
    stream = BatchStream([[5, EOS_ID]] * 3, tgt_ids, batch_tokens=64, seed=0)
    assert stream.target_tokens([0, 1, 2]) == 3 + 1 + 5
    assert stream.target_tokens([0, 1, 2]) == int((stream.batch([0, 1, 2]).tgt_out != PAD_ID).sum())


# ---- plan_batches


def random_lengths(n: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(1, 40), rng.randrange(1, 40)) for _ in range(n)]


@pytest.mark.parametrize("batch_tokens", [1, 30, 100, 1000])
def test_plan_covers_every_index_once(batch_tokens):
    lengths = random_lengths(200, seed=1)
    batches = plan_batches(lengths, batch_tokens, seed=0)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(batches)


@pytest.mark.parametrize("batch_tokens", [1, 30, 100, 1000])
def test_plan_respects_batch_tokens(batch_tokens):
    """rows × longest side ≤ batch_tokens, unless a single row is already over."""
    lengths = random_lengths(200, seed=2)
    for batch in plan_batches(lengths, batch_tokens, seed=0):
        longest = max(max(lengths[i]) for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= batch_tokens


def test_plan_respects_max_sentences():
    lengths = [(2, 2)] * 50
    batches = plan_batches(lengths, batch_tokens=10_000, seed=0, max_sentences=8)
    assert max(len(batch) for batch in batches) == 8
    assert sum(len(batch) for batch in batches) == 50


def test_plan_groups_similar_lengths():
    """Sorting by length keeps padding low: two clearly separated lengths never share a batch."""
    lengths = [(3, 3)] * 20 + [(30, 30)] * 20
    for batch in plan_batches(lengths, batch_tokens=300, seed=0):
        assert len({lengths[i] for i in batch}) == 1


def test_plan_is_seeded():
    """Same seed, same plan; another seed, another order."""
    lengths = random_lengths(200, seed=3)
    assert plan_batches(lengths, 100, seed=7) == plan_batches(lengths, 100, seed=7)
    assert plan_batches(lengths, 100, seed=7) != plan_batches(lengths, 100, seed=8)


def test_plan_of_nothing_is_empty():
    assert plan_batches([], 100, seed=0) == []


# ---- BatchStream


def test_each_epoch_sees_every_pair_once():
    """One epoch's batches hold every row exactly once, in order-preserving pairs."""
    src, tgt = toy_corpus()
    stream = BatchStream(src, tgt, batch_tokens=60, seed=1)
    n = stream.batches_per_epoch()
    batches = list(itertools.islice(training_batches(stream), 2 * n))
    for epoch in (batches[:n], batches[n:]):
        seen = [i for batch in epoch for i in row_ids(batch)]
        assert sorted(seen) == list(range(len(src)))
    for batch in batches:  # each source row still sits beside its own target
        for row, i in enumerate(row_ids(batch)):
            assert batch.tgt_out[row, : len(tgt[i])].tolist() == tgt[i]


def test_epochs_advance_and_epochs_done():
    src, tgt = toy_corpus()
    stream = BatchStream(src, tgt, batch_tokens=60, seed=1)
    n = stream.batches_per_epoch()
    assert n > 2
    assert stream.epochs_done == 0.0
    batches = training_batches(stream)
    next(batches)
    assert (stream.epoch, stream.position) == (0, 1)
    assert stream.epochs_done == pytest.approx(1 / n)
    for _ in range(n - 1):
        next(batches)
    assert stream.epochs_done == pytest.approx(1.0)
    next(batches)
    assert (stream.epoch, stream.position) == (1, 1)
    assert stream.epochs_done == pytest.approx(1 + 1 / stream.batches_per_epoch())


def test_epochs_are_shuffled_differently():
    """Epoch 1 does not replay epoch 0's order."""
    src, tgt = toy_corpus()
    stream = BatchStream(src, tgt, batch_tokens=60, seed=1)
    n = stream.batches_per_epoch()
    batches = list(itertools.islice(training_batches(stream), 2 * n))
    assert [row_ids(b) for b in batches[:n]] != [row_ids(b) for b in batches[n:]]


def training_batches(stream):
    """Batches in the order training takes them: rows planned by the stream, then assembled."""
    for rows in stream.rows():
        yield stream.batch(rows)


def same_batches(a, b) -> bool:
    return all(
        torch.equal(x.src, y.src) and torch.equal(x.tgt_in, y.tgt_in) and torch.equal(x.tgt_out, y.tgt_out)
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("taken", [0, 1, 5, "end_of_epoch", "into_second_epoch"])
def test_resume_matches_uninterrupted_stream(taken):
    """A fresh stream set to a saved (epoch, position) hands out the same next batches."""
    src, tgt = toy_corpus()
    stream = BatchStream(src, tgt, batch_tokens=60, seed=4)
    n = stream.batches_per_epoch()
    taken = {"end_of_epoch": n, "into_second_epoch": n + 2}.get(taken, taken)
    batches = training_batches(stream)
    for _ in range(taken):
        next(batches)
    saved = (stream.epoch, stream.position)
    expected = list(itertools.islice(batches, n + 3))  # runs over into the next epoch

    resumed = BatchStream(src, tgt, batch_tokens=60, seed=4)
    resumed.epoch, resumed.position = saved
    assert same_batches(list(itertools.islice(training_batches(resumed), n + 3)), expected)


def test_stream_is_seeded():
    src, tgt = toy_corpus()
    first = list(itertools.islice(training_batches(BatchStream(src, tgt, 60, seed=2)), 10))
    again = list(itertools.islice(training_batches(BatchStream(src, tgt, 60, seed=2)), 10))
    other = list(itertools.islice(training_batches(BatchStream(src, tgt, 60, seed=3)), 10))
    assert same_batches(first, again)
    assert [row_ids(b) for b in first] != [row_ids(b) for b in other]
