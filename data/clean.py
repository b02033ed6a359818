"""Clean a stream of pairs: normalize, then drop what would only teach the model noise.

In: `Pair`s straight from `tt.data.corpus`. Out: normalized `(src, tgt)` tuples and a
`CleaningReport` that counts every pair each rule removed, in the order the rules run:
1. an empty side (after normalization),
2. a side longer than `max_chars` characters,
3. an extreme length ratio (one side more than `max_ratio` times the other),
4. an exact duplicate of an earlier pair,
5. a pair that also appears in the dev set (so dev scores are not inflated).

Memory grows with the corpus by 8 bytes per kept pair: a pair is remembered for rule 4 as one
8-byte hash in sorted numpy arrays (`KeySet`), never as a Python object, and the dev split
(`DevPicker`) keeps only the pairs it holds out.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from tt.data.corpus import Pair
from tt.data.normalize import normalize

CHUNK = 8192  # pairs checked against the hashes together (numpy works best in bulk)


@dataclass
class CleaningConfig:
    max_chars: int = 300  # per side, after normalization
    max_ratio: float = 9.0  # longer side / shorter side, in characters
    ratio_min_chars: int = 10  # the ratio rule ignores pairs whose longer side is shorter than this


@dataclass
class CleaningReport:
    read: int = 0
    empty: int = 0
    too_long: int = 0
    ratio: int = 0
    duplicates: int = 0
    in_dev: int = 0
    kept: int = 0
    first_dropped: dict[str, str] = field(default_factory=dict)  # rule → "file:line", as an example

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("pairs read", self.read),
            ("dropped: an empty side", self.empty),
            ("dropped: over the length limit", self.too_long),
            ("dropped: extreme length ratio", self.ratio),
            ("dropped: exact duplicates", self.duplicates),
            ("dropped: also in dev", self.in_dev),
            ("kept", self.kept),
        ]

    def drop(self, rule: str, where: str) -> None:
        setattr(self, rule, getattr(self, rule) + 1)
        self.first_dropped.setdefault(rule, where)


def pair_key(src: str, tgt: str) -> int:
    # 8 bytes per pair: 10 million pairs dedup in 80 MB; two distinct pairs share a key with
    # a probability of about n²/2⁶⁵ (3 in a million for 10 million pairs).
    return int.from_bytes(hashlib.blake2b(f"{src}\t{tgt}".encode(), digest_size=8).digest(), "little")


class KeySet:
    """A growing set of 64-bit keys as a few sorted arrays, sizes roughly doubling.

    Membership is a binary search in each array; a new array merges into the one before it
    once that is no longer twice its size, so there are about log₂(n / CHUNK) of them.
    """

    def __init__(self, keys: Iterable[int] = ()):
        self.runs: list[np.ndarray] = []
        self.add(np.fromiter(keys, dtype=np.uint64))

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self.runs:
            at = np.searchsorted(run, keys).clip(max=len(run) - 1)
            found |= run[at] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        keys = np.unique(keys)
        if not len(keys):
            return
        self.runs.append(keys)
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            newer, older = self.runs.pop(), self.runs.pop()
            self.runs.append(np.union1d(older, newer))


def clean_stream(
    pairs: Iterable[Pair], config: CleaningConfig, report: CleaningReport, exclude: Iterable[int] | None = None
) -> Iterator[tuple[str, str]]:
    """The kept pairs, normalized, in corpus order; `report` counts as they go."""
    excluded = KeySet(exclude or ())
    seen = KeySet()
    waiting: list[tuple[str, str, int, str]] = []  # (src, tgt, key, where): passed rules 1-3

    def settle() -> Iterator[tuple[str, str]]:
        keys = np.fromiter((item[2] for item in waiting), dtype=np.uint64, count=len(waiting))
        first = np.zeros(len(keys), dtype=bool)
        first[np.unique(keys, return_index=True)[1]] = True
        duplicate = ~first | seen.contains(keys)
        in_dev = excluded.contains(keys)
        seen.add(keys)
        for (src, tgt, _, where), is_duplicate, is_in_dev in zip(waiting, duplicate.tolist(), in_dev.tolist()):
            if is_duplicate:
                report.drop("duplicates", where)
            elif is_in_dev:
                report.drop("in_dev", where)
            else:
                report.kept += 1
                yield src, tgt
        waiting.clear()

    for pair in pairs:
        report.read += 1
        src, tgt = normalize(pair.src), normalize(pair.tgt)
        if not src or not tgt:
            report.drop("empty", pair.where)
            continue
        shorter, longer = sorted((len(src), len(tgt)))
        if longer > config.max_chars:
            report.drop("too_long", pair.where)
            continue
        if longer >= config.ratio_min_chars and longer > config.max_ratio * shorter:
            report.drop("ratio", pair.where)
            continue
        waiting.append((src, tgt, pair_key(src, tgt), pair.where))
        if len(waiting) >= CHUNK:
            yield from settle()
    if waiting:
        yield from settle()


def clean_pairs(
    pairs: Iterable[Pair],
    config: CleaningConfig,
    exclude: Iterable[int] | None = None,
) -> tuple[list[tuple[str, str]], CleaningReport]:
    report = CleaningReport()
    kept = list(clean_stream(pairs, config, report, exclude))
    return kept, report


class DevPicker:
    """The dev split, one pair at a time: the `capacity` sources of lowest seeded hash.

    Which pairs are held out depends only on their sources and the seed, never on where
    they sit in the corpus or on its size, and it takes one pass and memory for the held-out
    pairs alone. Each held-out source's first pair is the dev pair; every pair sharing a
    held-out source leaves training, so the model is never trained on the very sentence
    it is later asked to translate.
    """

    def __init__(self, capacity: int, seed: int):
        self.capacity, self.key = max(capacity, 0), str(seed).encode()
        self.heap: list[tuple[int, str, str]] = []  # (-score, src, tgt): the largest score on top
        self.scores: set[int] = set()
        self.left_out = False  # has a source been offered that the heap does not hold?

    def score(self, src: str) -> int:
        return int.from_bytes(hashlib.blake2b(src.encode(), digest_size=8, key=self.key).digest(), "little")

    def offer(self, src: str, tgt: str) -> None:
        if not self.capacity:
            return
        score = self.score(src)
        if score in self.scores:
            return
        if len(self.heap) < self.capacity:
            heapq.heappush(self.heap, (-score, src, tgt))
            self.scores.add(score)
            return
        self.left_out = True  # this source, or the one it evicts
        if score < -self.heap[0][0]:
            evicted = heapq.heapreplace(self.heap, (-score, src, tgt))
            self.scores.discard(-evicted[0])
            self.scores.add(score)

    def pick(self, size: int) -> list[tuple[str, str]]:
        """The dev pairs: the `size` lowest scores (at most `capacity`), lowest first."""
        chosen = sorted((-negative, src, tgt) for negative, src, tgt in self.heap)[: max(size, 0)]
        return [(src, tgt) for _, src, tgt in chosen]

    def takes_everything(self, size: int) -> bool:
        """Would holding out `size` pairs take every source offered (nothing left to train on)?"""
        return bool(self.heap) and not self.left_out and size >= len(self.heap)


def auto_dev_size(n_pairs: int) -> int:
    """The held-out slice when no --dev is given: 5 %, at most 1,000; none for tiny corpora.

    Below 1,000 pairs every pair is worth more as training data than as a noisy dev score
    (the built-in demo is such a corpus).
    """
    if n_pairs < 1000:
        return 0
    return min(1000, n_pairs // 20)
