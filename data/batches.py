"""Token ids → padded tensors, in batches of pairs of similar length.

A batch is limited by `batch_tokens`, counted with padding: rows × longest source (or
target) in the batch. Sorting by length before cutting batches means little of each batch
is padding, so the compute goes into real tokens. The order of batches is shuffled anew
each epoch from `seed + epoch`, so a run — and a resumed run — sees the same batches in the
same order.

Teacher forcing: the decoder reads `tgt_in` = <s> y1 … yn and must predict
`tgt_out` = y1 … yn </s>, one position ahead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

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

    @property
    def n_tgt_tokens(self) -> int:
        """Real (non-padding) target tokens, end-of-sentence included."""
        return int((self.tgt_out != PAD_ID).sum())


def pad(rows: Sequence[Sequence[int]], length: int | None = None, pad_id: int = PAD_ID) -> torch.Tensor:
    length = length or max(len(row) for row in rows)
    out = torch.full((len(rows), length), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


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


def plan_batches(
    lengths: Sequence[tuple[int, int]], batch_tokens: int, seed: int, max_sentences: int = 1024
) -> list[list[int]]:
    """Group pair indices into batches of at most `batch_tokens` padded tokens per side.

    Pairs are sorted by (target, source) length, with a seeded random tie-break so that
    pairs of equal length mix differently each epoch; batches are then cut greedily.
    """
    rng = random.Random(seed)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][1], lengths[i][0], rng.random()))
    batches: list[list[int]] = []
    current: list[int] = []
    longest_src = longest_tgt = 0
    for index in order:
        src_len, tgt_len = lengths[index]
        grow_src, grow_tgt = max(longest_src, src_len), max(longest_tgt, tgt_len)
        rows = len(current) + 1
        if current and (rows * max(grow_src, grow_tgt) > batch_tokens or rows > max_sentences):
            batches.append(current)
            current, grow_src, grow_tgt = [], src_len, tgt_len
        current.append(index)
        longest_src, longest_tgt = grow_src, grow_tgt
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


class BatchStream:
    """Endless epochs of batches over an encoded corpus, resumable at (epoch, position)."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_tokens: int, seed: int):
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.lengths = [(len(s), len(t)) for s, t in zip(src_ids, tgt_ids)]
        self.batch_tokens, self.seed = batch_tokens, seed
        self.epoch, self.position = 0, 0  # the next batch to hand out
        self._plan: list[list[int]] | None = None

    def batches_per_epoch(self) -> int:
        return len(self._current_plan())

    def _current_plan(self) -> list[list[int]]:
        if self._plan is None:
            self._plan = plan_batches(self.lengths, self.batch_tokens, self.seed + self.epoch)
        return self._plan

    @property
    def epochs_done(self) -> float:
        """Epochs completed so far, as a fraction (2.5 = halfway through the third)."""
        return self.epoch + self.position / self.batches_per_epoch()

    def continue_from(self, old_batch_tokens: int) -> float:
        """`position` counted batches of another size: go on at the same share of the epoch.

        Returns that share. (Used when --resume changes --batch-tokens.)
        """
        old = BatchStream(self.src_ids, self.tgt_ids, old_batch_tokens, self.seed)
        old.epoch = self.epoch
        share = self.position / old.batches_per_epoch()
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
            self.position += 1
            yield indices

    def batch(self, indices: Sequence[int]) -> Batch:
        return make_batch([self.src_ids[i] for i in indices], [self.tgt_ids[i] for i in indices])

    def target_tokens(self, indices: Sequence[int]) -> int:
        """Real target tokens (</s> included) of these sentences."""
        return sum(self.lengths[i][1] for i in indices)

    def __iter__(self) -> Iterator[Batch]:
        for indices in self.rows():
            yield self.batch(indices)
