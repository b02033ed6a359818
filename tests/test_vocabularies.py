"""tt.data.vocabularies: one joint vocabulary where the languages share their characters,
one per language where they do not, and the sizes each side gets."""

from __future__ import annotations

import random
from collections import Counter

from tt.data.tokenizer import TokenizerConfig, train_tokenizer
from tt.data.vocabularies import (
    BYTE_PIECES,
    SHARED_SCRIPT,
    SPECIAL_PIECES,
    character_counts,
    needed_characters,
    own_sizes,
    plan_vocabularies,
    shared_characters,
)

GERMAN_ENGLISH = [("Ich habe drei Bücher.", "I have three books."), ("Wo ist der Bahnhof?", "Where is the station?")] * 20
CHINESE_ENGLISH = [("我有三本书。", "I have three books."), ("火车站在哪里？", "Where is the station?")] * 20


def test_languages_in_one_script_share_most_characters_and_in_two_scripts_almost_none():
    assert shared_characters(*character_counts(GERMAN_ENGLISH)) > 0.7
    assert shared_characters(*character_counts(CHINESE_ENGLISH)) < 0.05
    assert shared_characters(*character_counts([("abc", "abc")])) == 1.0
    assert shared_characters(*character_counts([("ab", "cd")])) == 0.0


def test_spaces_do_not_count_as_shared():
    """Chinese writes no spaces; English text is a sixth spaces, which must not look like a shared script."""
    assert shared_characters(*character_counts([("我有书", "a b c d e")])) == 0.0


def test_needed_characters_are_the_most_frequent_ones_up_to_the_coverage():
    text = Counter("a" * 90 + "b" * 9 + "c")
    assert needed_characters(text, 0.9) == 1
    assert needed_characters(text, 0.99) == 2
    assert needed_characters(text, 1.0) == 3


def test_tt_chooses_joint_for_one_script_and_separate_for_two():
    joint = plan_vocabularies(GERMAN_ENGLISH, 4000, None, None, None, 0.9995)
    assert joint.joint and joint.src_size == joint.tgt_size == 4000 and joint.shared >= SHARED_SCRIPT
    separate = plan_vocabularies(CHINESE_ENGLISH, 4000, None, None, None, 0.9995)
    assert not separate.joint and separate.shared < SHARED_SCRIPT
    assert (separate.src_size, separate.tgt_size) == own_sizes(*character_counts(CHINESE_ENGLISH), 4000, 0.9995)


def test_a_choice_made_by_the_user_stands():
    assert plan_vocabularies(CHINESE_ENGLISH, 4000, True, None, None, 0.9995).joint
    asked = plan_vocabularies(GERMAN_ENGLISH, 4000, False, None, None, 0.9995)
    assert not asked.joint and (asked.src_size, asked.tgt_size) == (4000, 4000) and asked.shared is None
    sized = plan_vocabularies(GERMAN_ENGLISH, 4000, None, None, 1500, 0.9995)  # a side's size means separate
    assert not sized.joint and (sized.src_size, sized.tgt_size) == (4000, 1500)
    assert (sized.src_option, sized.tgt_option) == ("--vocab-size", "--tgt-vocab-size")


def test_each_side_keeps_its_characters_and_the_joint_room_for_longer_pieces():
    rng = random.Random(0)
    characters = [chr(0x4E00 + i) for i in range(500)]
    pairs = [("".join(rng.choice(characters) for _ in range(20)), "the cat sat on a mat") for _ in range(2000)]
    src_counts, tgt_counts = character_counts(pairs)
    src_chars = needed_characters(src_counts, 1.0)
    tgt_chars = needed_characters(tgt_counts, 1.0)
    room = 2000 - SPECIAL_PIECES - BYTE_PIECES - src_chars - tgt_chars
    assert own_sizes(src_counts, tgt_counts, 2000, 1.0) == (
        SPECIAL_PIECES + BYTE_PIECES + src_chars + room, SPECIAL_PIECES + BYTE_PIECES + tgt_chars + room,
    )
    # Characters that would fill a joint vocabulary still leave each side a quarter of it for longer pieces.
    assert own_sizes(src_counts, tgt_counts, 800, 1.0)[1] == SPECIAL_PIECES + BYTE_PIECES + tgt_chars + 200
    assert own_sizes(src_counts, tgt_counts, 800, 1.0)[0] == 800  # never above --vocab-size


def test_the_default_tokenizer_of_a_chinese_english_corpus_is_two_vocabularies():
    pairs = [(f"我有{n}本书。", f"I have {n} books.") for n in range(300)]
    tokenizer, _ = train_tokenizer(pairs, TokenizerConfig(vocab_size=400))
    assert not tokenizer.joint
    latin = [(f"Ich habe {n} Bücher.", f"I have {n} books.") for n in range(300)]
    assert train_tokenizer(latin, TokenizerConfig(vocab_size=400))[0].joint
