"""tt.data.normalize: NFKC, whitespace collapsed and trimmed, invisible characters dropped."""

from __future__ import annotations

import pytest

from tt.data.normalize import normalize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("你好！", "你好!"),  # full-width exclamation mark
        ("ｆｕｌｌ ｗｉｄｔｈ", "full width"),  # full-width Latin letters
        ("１２３", "123"),  # full-width digits
        ("（你好）", "(你好)"),
        ("\ufb01ne", "fine"),  # the ligature ﬁ splits
        ("你好", "你好"),  # ordinary Chinese is untouched
    ],
)
def test_nfkc(text, expected):
    """Compatibility forms fold to their plain equivalents."""
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a  b",
        "a\tb",
        "a \t \n b",
        "a\u00a0b",  # no-break space
        "a\u3000b",  # ideographic space
        "  a b  ",
        "\ta b\r\n",
    ],
)
def test_whitespace_runs_become_one_space_and_ends_are_trimmed(text):
    assert normalize(text) == "a b"


def test_only_whitespace_becomes_empty():
    assert normalize(" \t\u00a0\u3000\n") == ""


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"])
def test_zero_width_characters_removed(invisible):
    """Zero-width characters vanish, inside words and at the ends."""
    assert normalize(f"{invisible}你{invisible}好{invisible}") == "你好"


def test_zero_width_between_spaces_leaves_one_space():
    assert normalize("a \u200b b") == "a b"


IDEMPOTENCE_CASES = [
    "你好！ Ｈｅｌｌｏ\u3000ｗｏｒｌｄ",
    "  tabs\tand\u00a0spaces  ",
    "\ufeffbom\u200band\u200dzero width",
    "ﬁne ① ㎏ ½",
    "e\u0301 café",  # combining accent next to a precomposed one
    "\u00b4leading spacing accent",  # NFKC turns ´ into space + combining accent
    "",
]


@pytest.mark.parametrize("text", IDEMPOTENCE_CASES)
def test_idempotent(text):
    """Normalizing twice changes nothing more: training text and prompt text agree."""
    once = normalize(text)
    assert normalize(once) == once


@pytest.mark.parametrize("text", ["e\u200b\u0301", "\u1100\u200b\u1161"])  # e + ́ ; Hangul ᄀ + ᅡ
def test_idempotent_across_removed_zero_width(text):
    """An invisible character between a letter and its accent must not delay composition."""
    once = normalize(text)
    assert normalize(once) == once
