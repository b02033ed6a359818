"""Token ids → padded tensors, in batches of pairs of similar length.

A batch is limited by `batch_tokens`, counted with padding: rows × longest source (or
target) in the batch. Sorting by length before cutting batches means little of each batch
is padding, so the compute goes into real tokens. The order of batches is shuffled anew
each epoch from `seed + epoch`, so a run — and a resumed run — sees the same batches in the
same order.

Batches are planned from the two lengths arrays alone (numpy), never from the token ids,
so the ids may stay on disk (`tt.data.shards`) while a plan for millions of pairs costs a
few bytes per pair.

Teacher forcing: the decoder reads `tgt_in` = <s> y1 … yn and must predict
`tgt_out` = y1 … yn </s>, one position ahead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import chain
from typing import Iterator, Sequence

import numpy as np
import torch

from tt.data.tokenizer import BOS_ID, PAD_ID


@dataclass
class Batch:
    src: torch.Tensor  # (batch, src_len) token ids, PAD_ID after the end
    tgt_in: torch.Tensor  # (batch, tgt_len) <s> y1 … yn
    tgt_out: torch.Tensor  # (batch, tgt_len) y1 … yn </s>
    src_pad_mask: torch.Tensor  # (batch, src_len) True where src is padding

    def to(self, device: torch.device) -> "Batch":
        if self.src.device == device:
            return self
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.src), move(self.tgt_in), move(self.tgt_out), move(self.src_pad_mask))


def pad(rows: Sequence[Sequence[int]], length: int | None = None, pad_id: int = PAD_ID) -> torch.Tensor:
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    length = length or int(lengths.max())
    out = np.full((len(rows), length), pad_id, dtype=np.int64)
    # One assignment for the whole batch, not one tensor copy per sentence (~500 a step):
    # the mask's True cells, read row by row, are exactly where the ids go in order.
    out[np.arange(length) < lengths[:, None]] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(out)


def make_batch(
    src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], start_id: int = BOS_ID, pad_id: int = PAD_ID
) -> Batch:
    """Each tgt row ends in EOS; tgt_in shifts it right behind the start token (tt's BOS).

    Other ids: a published model's (ModelConfig.start_id, pad_id), for scoring, never for training.
    """
    src = pad(src_ids, pad_id=pad_id)
    tgt_out = pad(tgt_ids, pad_id=pad_id)
    tgt_in = pad([[start_id, *row[:-1]] for row in tgt_ids], tgt_out.shape[1], pad_id)
    return Batch(src=src, tgt_in=tgt_in, tgt_out=tgt_out, src_pad_mask=src == pad_id)


class Plan:
    """One epoch's batches: pair indices sorted by length, cut into runs, the runs shuffled.

    Held as three arrays instead of a list of lists: `order` (every index once, sorted by
    length), `starts` (where each batch begins in `order`) and `sequence` (the shuffled
    order in which the batches are handed out).
    """

    def __init__(self, order: np.ndarray, starts: np.ndarray, sequence: list[int]):
        self.order, self.starts, self.sequence = order, starts, sequence

    def __len__(self) -> int:
        return len(self.sequence)

    def __getitem__(self, position: int) -> list[int]:
        batch = self.sequence[position]
        return self.order[self.starts[batch] : self.starts[batch + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[position] for position in range(len(self)))


def plan_epoch(
    src_lengths: np.ndarray, tgt_lengths: np.ndarray, batch_tokens: int, seed: int, max_sentences: int = 1024
) -> Plan:
    """Group pair indices into batches of at most `batch_tokens` padded tokens per side.

    Pairs are sorted by (target, source) length, pairs of equal length in a seeded random
    order that changes each epoch; batches are then cut greedily and their order shuffled.

    The sort is a shuffle followed by two stable sorts, source length then target length
    (a radix sort: a few linear passes over 16-bit keys). For ten million pairs the whole
    plan took about 2 s and 4 bytes per pair kept (the order), where a lexsort with a
    random tie-break column took 3.8 s, 28 bytes per pair at its peak and 8 kept. The
    random numbers come from numpy's `default_rng(seed)` (the shuffle) and Python's
    `random.Random(seed)` (the order of the batches), so a plan is the same whichever way
    the lengths are held.
    """
    src_lengths, tgt_lengths = _narrow(src_lengths), _narrow(tgt_lengths)
    n = len(src_lengths)
    index = np.uint32 if n < 1 << 32 else np.int64  # the order is kept all epoch: 4 bytes a pair
    order = np.random.default_rng(seed).permutation(np.arange(n, dtype=index))
    if n and max(int(src_lengths.max()), int(tgt_lengths.max())) < 1 << 8:
        # Both lengths in one 16-bit key (the usual case: the model's positions are ≤ 256):
        # one radix sort, and the sorted lengths read off the sorted keys.
        key = (tgt_lengths.astype(np.uint16) << 8) | src_lengths
        order = order[np.argsort(key[order], kind="stable")]
        # The keys in sorted order without sorting them: each value as often as it occurs.
        key = np.repeat(np.arange(1 << 16, dtype=np.uint16), np.bincount(key, minlength=1 << 16))
        src_sorted, tgt_sorted = key & 0xFF, key >> 8
    else:
        order = order[np.argsort(src_lengths[order], kind="stable")]
        order = order[np.argsort(tgt_lengths[order], kind="stable")]
        src_sorted, tgt_sorted = src_lengths[order], tgt_lengths[order]
    starts = _cut(src_sorted, tgt_sorted, batch_tokens, max_sentences)
    sequence = list(range(len(starts) - 1))
    random.Random(seed).shuffle(sequence)
    return Plan(order, starts, sequence)


def plan_batches(
    lengths: Sequence[tuple[int, int]], batch_tokens: int, seed: int, max_sentences: int = 1024
) -> list[list[int]]:
    """`plan_epoch` for a short list of (source, target) lengths, as lists of indices."""
    pairs = np.asarray(lengths, dtype=np.int64).reshape(-1, 2)
    return list(plan_epoch(pairs[:, 0], pairs[:, 1], batch_tokens, seed, max_sentences))


def _narrow(lengths) -> np.ndarray:
    """Lengths as uint16 where they fit (numpy radix-sorts 16-bit keys), else as they are."""
    lengths = np.asarray(lengths)
    if lengths.dtype != np.uint16 and (not len(lengths) or int(lengths.max()) < 1 << 16):
        lengths = lengths.astype(np.uint16)
    return lengths


def _cut(src_sorted: np.ndarray, tgt_sorted: np.ndarray, batch_tokens: int, max_sentences: int) -> np.ndarray:
    """Where each batch starts: greedily, a new one when one more row would break a limit.

    Targets arrive sorted, so a batch's longest target is its last; only the source needs
    a running maximum. No batch beginning at row s can hold more than
    batch_tokens // tgt[s] rows (nor more than max_sentences), so each cut looks at that
    window alone.
    """
    n = len(src_sorted)
    starts = [0]
    begin = 0
    rows = np.arange(1, max_sentences + 1)
    while begin < n:
        window = max(1, min(max_sentences, batch_tokens // max(int(tgt_sorted[begin]), 1)))
        src_part = src_sorted[begin : begin + window]
        longest = np.maximum(np.maximum.accumulate(src_part), tgt_sorted[begin : begin + window])
        over = rows[: len(longest)] * longest > batch_tokens
        first = int(over.argmax())
        size = first if over[first] else len(longest)
        begin += max(size, 1)  # a row longer than the budget still makes a batch of its own
        starts.append(begin)
    return np.asarray(starts, dtype=np.int64)


def lengths_of(rows) -> np.ndarray:
    """The length of every row: a token array's own index, or counted for a list of lists."""
    lengths = getattr(rows, "lengths", None)
    if lengths is not None:
        return lengths
    return np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))


class BatchStream:
    """Endless epochs of batches over an encoded corpus, resumable at (epoch, position).

    `src_ids`/`tgt_ids`: row i is pair i's token ids, as lists or as `tt.data.shards`
    token arrays on disk; both give the same batches in the same order. With a `sampler`
    (`tt.data.subword_sampling`), each batch's rows are spelled anew as it is handed out;
    batches are still planned from the usual spellings' lengths.
    """

    def __init__(self, src_ids, tgt_ids, batch_tokens: int, seed: int, sampler=None):
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.src_lengths, self.tgt_lengths = lengths_of(src_ids), lengths_of(tgt_ids)
        self.batch_tokens, self.seed = batch_tokens, seed
        self.epoch, self.position = 0, 0  # the next batch to hand out
        self._plan: Plan | None = None
        self.sampler = sampler
        self._spelled: dict[int, tuple[list[int], list[int]]] = {}  # the current batch's rows, as sampled

    def __len__(self) -> int:
        return len(self.src_lengths)

    def batches_per_epoch(self) -> int:
        return len(self._current_plan())

    def _current_plan(self) -> Plan:
        if self._plan is None:
            self._plan = plan_epoch(self.src_lengths, self.tgt_lengths, self.batch_tokens, self.seed + self.epoch)
        return self._plan

    @property
    def epochs_done(self) -> float:
        """Epochs completed so far, as a fraction (2.5 = halfway through the third)."""
        return self.epoch + self.position / self.batches_per_epoch()

    def continue_from(self, old_batch_tokens: int) -> float:
        """`position` counted batches of another size: go on at the same share of the epoch.

        Returns that share. (Used when --resume changes --batch-tokens.)
        """
        old = plan_epoch(self.src_lengths, self.tgt_lengths, old_batch_tokens, self.seed + self.epoch)
        share = self.position / len(old)
        self.position, self._plan = round(share * self.batches_per_epoch()), None
        return share

    def rows(self) -> Iterator[list[int]]:
        """The batches as lists of sentence indices (a process may train on a share of each)."""
        while True:
            plan = self._current_plan()
            if self.position >= len(plan):
                self.epoch, self.position, self._plan = self.epoch + 1, 0, None
                continue
            indices = plan[self.position]
            if self.sampler is not None:  # the whole batch at once: every process spells it alike
                spelled = self.sampler(*self._stored(indices), self.epoch, self.position)
                self._spelled = dict(zip(indices, zip(*spelled)))
            self.position += 1
            yield indices

    def batch(self, indices: Sequence[int]) -> Batch:
        """Some or all of the rows of the batch last handed out (any rows without a sampler)."""
        return make_batch(*self._rows(indices))

    def target_tokens(self, indices: Sequence[int]) -> int:
        """Real target tokens (</s> included) of these sentences."""
        if self.sampler is not None:
            return sum(len(tgt) for tgt in self._rows(indices)[1])
        return int(self.tgt_lengths[list(indices)].sum())

    def _stored(self, indices: Sequence[int]) -> tuple[list, list]:
        return [self.src_ids[i] for i in indices], [self.tgt_ids[i] for i in indices]

    def _rows(self, indices: Sequence[int]) -> tuple[list, list]:
        if self.sampler is None:
            return self._stored(indices)
        return [self._spelled[i][0] for i in indices], [self._spelled[i][1] for i in indices]
