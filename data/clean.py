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

Rules 1-3 look at one pair at a time (`screen`); rules 4-5 and the report depend on the
pairs before (`Sieve`), so `tt.data.parallel_clean` can run `screen` on all cores.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field
from itertools import compress, islice
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


def source_score(src: str, key: bytes) -> int:
    """The DevPicker's seeded hash of a source: the lowest scores are held out."""
    return int.from_bytes(hashlib.blake2b(src.encode(), digest_size=8, key=key).digest(), "little")


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
        keys = sorted_unique(keys)
        if not len(keys):
            return
        self.runs.append(keys)
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            newer, older = self.runs.pop(), self.runs.pop()
            self.runs.append(sorted_unique(np.concatenate([older, newer])))


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    # np.unique hashes 64-bit keys (numpy 2.x), hundreds of times slower here than a stable
    # sort, which merges two sorted runs in one linear pass.
    keys = np.sort(keys, kind="stable")
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) > 1 else keys


def first_of_each(keys: np.ndarray) -> np.ndarray:
    """True where a key appears for the first time in `keys`."""
    if not len(keys):
        return np.zeros(0, dtype=bool)
    order = np.argsort(keys, kind="stable")  # equal keys keep their order: the first comes first
    ordered = keys[order]
    first = np.zeros(len(keys), dtype=bool)
    first[order[np.concatenate(([True], ordered[1:] != ordered[:-1]))]] = True
    return first


@dataclass
class Screened:
    """A run of pairs after rules 1-3, in corpus order: those that passed, and each one dropped.

    Worker processes send these back (`tt.data.parallel_clean`), hence plain lists of plain values.
    """

    read: int = 0
    src: list[str] = field(default_factory=list)  # the pairs that passed, normalized
    tgt: list[str] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)  # pair_key of each
    where: list[str] = field(default_factory=list)
    at: list[int] = field(default_factory=list)  # the index of each among the pairs read
    dropped: list[tuple[int, str, str]] = field(default_factory=list)  # (index, rule, where)
    scores: list[int] | None = None  # the DevPicker score of each source, when asked for


def screen(rows: Iterable[tuple[str, str, str]], config: CleaningConfig, score_key: bytes | None = None) -> Screened:
    """Normalize each (src, tgt, where) and apply rules 1-3; none of this depends on other pairs."""
    run = Screened()
    max_chars, max_ratio, ratio_min_chars = config.max_chars, config.max_ratio, config.ratio_min_chars
    index = -1
    for index, (src, tgt, where) in enumerate(rows):
        src, tgt = normalize(src), normalize(tgt)
        if not src or not tgt:
            run.dropped.append((index, "empty", where))
            continue
        shorter, longer = (len(src), len(tgt)) if len(src) <= len(tgt) else (len(tgt), len(src))
        if longer > max_chars:
            run.dropped.append((index, "too_long", where))
            continue
        if longer >= ratio_min_chars and longer > max_ratio * shorter:
            run.dropped.append((index, "ratio", where))
            continue
        run.src.append(src)
        run.tgt.append(tgt)
        run.keys.append(pair_key(src, tgt))
        run.where.append(where)
        run.at.append(index)
    run.read = index + 1
    if score_key is not None:
        run.scores = [source_score(src, score_key) for src in run.src]
    return run


class Sieve:
    """Rules 4 and 5 and the report, over runs of screened pairs taken in corpus order.

    Keys are checked in bulk, CHUNK passed pairs at a time. A drop by rules 1-3 is counted
    at its own place between those checks, so the report, down to the example each rule
    shows first (and the order they appear in), does not depend on how the corpus was cut
    into runs, nor on whether one process or several screened them.
    """

    def __init__(self, report: CleaningReport, exclude: Iterable[int] | None = None):
        self.report = report
        self.excluded = KeySet(exclude or ())
        self.seen = KeySet()
        self.waiting = Screened(scores=[])  # passed rules 1-3, not yet checked against the keys

    def run(self, runs: Iterable[Screened]) -> Iterator[tuple[str, str, int | None]]:
        """The kept pairs as (src, tgt, DevPicker score or None), in corpus order."""
        for kept in self.run_in_chunks(runs):
            yield from kept

    def run_in_chunks(self, runs: Iterable[Screened]) -> Iterator[list[tuple[str, str, int | None]]]:
        """`run`'s pairs in lists of up to a few CHUNKs: a caller that handles them in bulk
        (`tt.data.prepare`) spends no Python call per pair."""
        for screened in runs:
            if kept := self.take(screened):
                yield kept
        if self.waiting.keys and (kept := self._settle()):
            yield kept

    def take(self, run: Screened) -> list[tuple[str, str, int | None]]:
        """Count `run` in; the pairs kept by the checks it completes."""
        self.report.read += run.read
        kept: list[tuple[str, str, int | None]] = []
        dropped, next_drop, begin = run.dropped, 0, 0
        while begin < len(run.keys):
            waiting = self.waiting  # a fresh one after each settle
            end = min(len(run.keys), begin + CHUNK - len(waiting.keys))
            while next_drop < len(dropped) and dropped[next_drop][0] < run.at[end - 1]:
                self.report.drop(dropped[next_drop][1], dropped[next_drop][2])
                next_drop += 1
            waiting.src += run.src[begin:end]
            waiting.tgt += run.tgt[begin:end]
            waiting.keys += run.keys[begin:end]
            waiting.where += run.where[begin:end]
            waiting.scores += run.scores[begin:end] if run.scores is not None else [None] * (end - begin)
            begin = end
            if len(waiting.keys) >= CHUNK:
                kept += self._settle()
        for _, rule, where in dropped[next_drop:]:
            self.report.drop(rule, where)
        return kept

    def _settle(self) -> list[tuple[str, str, int | None]]:
        waiting, report = self.waiting, self.report
        keys = np.array(waiting.keys, dtype=np.uint64)
        duplicate = ~first_of_each(keys) | self.seen.contains(keys)
        in_dev = self.excluded.contains(keys) & ~duplicate
        self.seen.add(keys)
        self.waiting = Screened(scores=[])
        # Counted in bulk; each rule's first example is recorded in the order the pairs come.
        firsts = [(int(mask.argmax()), rule) for rule, mask in (("duplicates", duplicate), ("in_dev", in_dev)) if mask.any()]
        for index, rule in sorted(firsts):
            report.first_dropped.setdefault(rule, waiting.where[index])
        report.duplicates += int(duplicate.sum())
        report.in_dev += int(in_dev.sum())
        keep = (~(duplicate | in_dev)).tolist()
        kept = list(zip(compress(waiting.src, keep), compress(waiting.tgt, keep), compress(waiting.scores, keep)))
        report.kept += len(kept)
        return kept


def screened_runs(pairs: Iterable[Pair], config: CleaningConfig, score_key: bytes | None = None) -> Iterator[Screened]:
    """Rules 1-3 in this process, CHUNK pairs at a time (`tt.data.parallel_clean` does it on all cores)."""
    rows = ((pair.src, pair.tgt, pair.where) for pair in pairs)
    while (run := screen(islice(rows, CHUNK), config, score_key)).read:
        yield run


def clean_stream(
    pairs: Iterable[Pair], config: CleaningConfig, report: CleaningReport, exclude: Iterable[int] | None = None
) -> Iterator[tuple[str, str]]:
    """The kept pairs, normalized, in corpus order; `report` counts as they go."""
    for src, tgt, _ in Sieve(report, exclude).run(screened_runs(pairs, config)):
        yield src, tgt


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
        return source_score(src, self.key)

    def offer(self, src: str, tgt: str, score: int | None = None) -> None:
        """Consider one kept pair; `score`, when given, is `self.score(src)` computed elsewhere."""
        if not self.capacity:
            return
        if score is None:
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

    def offer_many(self, kept: list[tuple[str, str, int | None]]) -> None:
        """`offer` each (src, tgt, score) in turn; once the heap is full, only those that can
        still enter it (the heap's largest score only falls, so a score above it now is
        above it for good)."""
        begin = 0
        while begin < len(kept) and len(self.heap) < self.capacity:
            self.offer(*kept[begin])
            begin += 1
        if begin == len(kept) or not self.capacity:
            return
        rest = kept[begin:]
        if not self.left_out:  # what `offer` notes for a new source while the heap is full
            scores = self.scores
            self.left_out = any((self.score(src) if score is None else score) not in scores for src, _, score in rest)
        largest = -self.heap[0][0]
        for src, tgt, score in rest:
            if score is None:
                score = self.score(src)
            if score < largest:
                self.offer(src, tgt, score)
                largest = -self.heap[0][0]

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
