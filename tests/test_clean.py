"""tt.data.clean: each rule drops and counts (the dev split itself: test_prepare.py)."""

from __future__ import annotations

import pytest

from tt.data.clean import CleaningConfig, CleaningReport, auto_dev_size, clean_pairs, pair_key
from tt.data.corpus import Pair


def pairs_of(*sides: tuple[str, str]) -> list[Pair]:
    return [Pair(src, tgt, f"c.tsv:{n}") for n, (src, tgt) in enumerate(sides, start=1)]


def counts(report: CleaningReport) -> dict[str, int]:
    return {name: getattr(report, name) for name in ("empty", "too_long", "ratio", "duplicates", "in_dev", "kept")}


def only(**nonzero: int) -> dict[str, int]:
    """The expected counts: those named, zero elsewhere."""
    return {name: nonzero.get(name, 0) for name in ("empty", "too_long", "ratio", "duplicates", "in_dev", "kept")}


def test_good_pairs_are_kept_normalized():
    """Nothing is dropped from clean text; what is kept is the normalized text."""
    kept, report = clean_pairs(pairs_of(("你好！", "Hello  world"), ("谢谢", "Thanks")), CleaningConfig())
    assert kept == [("你好!", "Hello world"), ("谢谢", "Thanks")]
    assert counts(report) == only(kept=2)
    assert report.read == 2
    assert report.first_dropped == {}


@pytest.mark.parametrize("src, tgt", [("", "Hello"), ("你好", ""), ("  ", "Hello"), ("你好", "\u200b\u3000"), ("", "")])
def test_empty_side(src, tgt):
    """A side that is empty after normalization drops the pair."""
    kept, report = clean_pairs(pairs_of(("谢谢", "Thanks"), (src, tgt)), CleaningConfig())
    assert kept == [("谢谢", "Thanks")]
    assert counts(report) == only(empty=1, kept=1)
    assert report.first_dropped == {"empty": "c.tsv:2"}


def test_too_long():
    """A side longer than max_chars drops the pair; exactly max_chars is kept."""
    config = CleaningConfig(max_chars=10, max_ratio=100.0)
    kept, report = clean_pairs(pairs_of(("短", "x" * 10), ("短", "y" * 11), ("z" * 11, "short")), config)
    assert kept == [("短", "x" * 10)]
    assert counts(report) == only(too_long=2, kept=1)
    assert report.first_dropped == {"too_long": "c.tsv:2"}


def test_length_is_counted_after_normalization():
    """Whitespace padding that normalization removes does not count towards the limit."""
    kept, report = clean_pairs(pairs_of(("短", "   " + "x" * 10 + "   ")), CleaningConfig(max_chars=10, max_ratio=100.0))
    assert kept == [("短", "x" * 10)]


def test_ratio():
    """One side more than max_ratio times the other drops the pair, either way round."""
    config = CleaningConfig(max_ratio=3.0, ratio_min_chars=10)
    kept, report = clean_pairs(
        pairs_of(
            ("abcd", "x" * 12),  # exactly 3 times: kept
            ("abcd", "x" * 13),  # over 3 times: dropped
            ("x" * 13, "abcd"),  # the source is the long side: dropped
        ),
        config,
    )
    assert kept == [("abcd", "x" * 12)]
    assert counts(report) == only(ratio=2, kept=1)
    assert report.first_dropped == {"ratio": "c.tsv:2"}


def test_ratio_ignores_short_pairs():
    """Below ratio_min_chars on the longer side the ratio rule does not apply."""
    config = CleaningConfig(max_ratio=2.0, ratio_min_chars=10)
    kept, report = clean_pairs(pairs_of(("a", "x" * 9), ("a", "x" * 10)), config)
    assert kept == [("a", "x" * 9)]
    assert report.ratio == 1


def test_duplicates_after_normalization():
    """Pairs equal after normalization are duplicates; the first copy stays."""
    kept, report = clean_pairs(
        pairs_of(("你好！", "Hello world"), ("谢谢", "Thanks"), ("你好!", " Hello\u00a0world "), ("你好！", "Hi")),
        CleaningConfig(),
    )
    assert kept == [("你好!", "Hello world"), ("谢谢", "Thanks"), ("你好!", "Hi")]
    assert counts(report) == only(duplicates=1, kept=3)
    assert report.first_dropped == {"duplicates": "c.tsv:3"}


def test_in_dev_exclusion():
    """A pair whose normalized key is in the dev set is dropped, even if written differently."""
    exclude = {pair_key("你好!", "Hello world")}
    kept, report = clean_pairs(pairs_of(("谢谢", "Thanks"), ("你好！", "Hello  world")), CleaningConfig(), exclude)
    assert kept == [("谢谢", "Thanks")]
    assert counts(report) == only(in_dev=1, kept=1)
    assert report.first_dropped == {"in_dev": "c.tsv:2"}


def test_pair_key_separates_sides():
    """Moving text from one side to the other gives another key."""
    assert pair_key("ab", "c") != pair_key("a", "bc")
    assert pair_key("你好", "Hello") == pair_key("你好", "Hello")


def test_every_pair_read_is_counted_once():
    """read = the sum of the drops + kept; first_dropped holds the first offender of each rule."""
    config = CleaningConfig(max_chars=20, max_ratio=3.0, ratio_min_chars=5)
    pairs = pairs_of(
        ("一", "one"),  # kept
        ("", "nothing"),  # empty
        ("二", "x" * 21),  # too long
        ("三", "three three"),  # ratio
        ("一", "one"),  # duplicate
        ("四", "four"),  # in dev
        ("", ""),  # empty again: first_dropped keeps line 2
        ("五", "five"),  # kept
    )
    kept, report = clean_pairs(pairs, config, exclude={pair_key("四", "four")})
    assert counts(report) == only(empty=2, too_long=1, ratio=1, duplicates=1, in_dev=1, kept=2)
    assert report.read == len(pairs) == sum(counts(report).values())
    assert report.first_dropped == {
        "empty": "c.tsv:2",
        "too_long": "c.tsv:3",
        "ratio": "c.tsv:4",
        "duplicates": "c.tsv:5",
        "in_dev": "c.tsv:6",
    }
    assert [count for _, count in report.rows()] == [8, 2, 1, 1, 1, 1, 2]


def test_clean_accepts_a_generator():
    """Pairs may come as a stream, read once."""
    kept, report = clean_pairs((p for p in pairs_of(("一", "one"), ("二", "two"))), CleaningConfig())
    assert len(kept) == report.kept == report.read == 2


# ---- dev split


@pytest.mark.parametrize(
    "n_pairs, expected",
    [(0, 0), (999, 0), (1000, 50), (1019, 50), (1020, 51), (19_999, 999), (20_000, 1000), (10**6, 1000)],
)
def test_auto_dev_size(n_pairs, expected):
    """None below 1,000 pairs, then 5 % (rounded down), at most 1,000."""
    assert auto_dev_size(n_pairs) == expected
