"""Clean a stream of pairs: normalize, then drop what would only teach the model noise.

In: `Pair`s straight from `tt.data.corpus`. Out: normalized `(src, tgt)` tuples and a
`CleaningReport` that counts every pair each rule removed, in the order the rules run:
1. an empty side (after normalization),
2. a side longer than `max_chars` characters,
3. an extreme length ratio (one side more than `max_ratio` times the other),
4. an exact duplicate of an earlier pair,
5. a pair that also appears in the dev set (so dev scores are not inflated).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Iterable

from tt.data.corpus import Pair
from tt.data.normalize import normalize


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


def pair_key(src: str, tgt: str) -> bytes:
    # A digest instead of the strings: a corpus of millions of pairs dedups in little memory.
    return hashlib.blake2b(f"{src}\t{tgt}".encode(), digest_size=12).digest()


def clean_pairs(
    pairs: Iterable[Pair],
    config: CleaningConfig,
    exclude: set[bytes] | None = None,
) -> tuple[list[tuple[str, str]], CleaningReport]:
    report = CleaningReport()
    exclude = exclude or set()
    seen: set[bytes] = set()
    kept: list[tuple[str, str]] = []

    def drop(rule: str, pair: Pair) -> None:
        setattr(report, rule, getattr(report, rule) + 1)
        report.first_dropped.setdefault(rule, pair.where)

    for pair in pairs:
        report.read += 1
        src, tgt = normalize(pair.src), normalize(pair.tgt)
        if not src or not tgt:
            drop("empty", pair)
            continue
        shorter, longer = sorted((len(src), len(tgt)))
        if longer > config.max_chars:
            drop("too_long", pair)
            continue
        if longer >= config.ratio_min_chars and longer > config.max_ratio * shorter:
            drop("ratio", pair)
            continue
        key = pair_key(src, tgt)
        if key in seen:
            drop("duplicates", pair)
            continue
        seen.add(key)
        if key in exclude:
            drop("in_dev", pair)
            continue
        kept.append((src, tgt))
    report.kept = len(kept)
    return kept, report


def split_dev(
    pairs: list[tuple[str, str]], dev_size: int, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Hold out `dev_size` pairs at random (seeded); every copy of a held-out source goes too.

    Removing all pairs that share a held-out source keeps the dev set honest: the model is
    never trained on the very sentence it is later asked to translate.
    """
    if dev_size <= 0 or not pairs:
        return pairs, []
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    dev_sources: set[str] = set()
    dev: list[tuple[str, str]] = []
    for index in order:
        if len(dev) >= dev_size:
            break
        src = pairs[index][0]
        if src not in dev_sources:
            dev_sources.add(src)
            dev.append(pairs[index])
    train = [pair for pair in pairs if pair[0] not in dev_sources]
    return train, dev


def auto_dev_size(n_pairs: int) -> int:
    """The held-out slice when no --dev is given: 5 %, at most 1,000; none for tiny corpora.

    Below 1,000 pairs every pair is worth more as training data than as a noisy dev score
    (the built-in demo is such a corpus).
    """
    if n_pairs < 1000:
        return 0
    return min(1000, n_pairs // 20)
