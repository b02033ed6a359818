"""tt.data.tokenizer: training adapts to a tiny corpus, byte fallback, round trips, files."""

from __future__ import annotations

import pytest

from tt.data.errors import UserError
from tt.data.tokenizer import (
    BOS_ID,
    BYTE_PIECES,
    EOS_ID,
    PAD_ID,
    SPECIAL_PIECES,
    UNK_ID,
    Tokenizer,
    TokenizerConfig,
    train_tokenizer,
    vocabulary_sizes,
)

CHINESE = ["我", "你", "他", "有", "看", "喜欢", "苹果", "书", "猫", "狗", "茶", "水", "今天", "明天", "学校", "朋友"]
ENGLISH = ["I", "you", "he", "have", "see", "like", "apples", "books", "cats", "dogs", "tea", "water", "today", "tomorrow", "school", "friends"]
RARE_CHARACTER = "鬱"  # appears once in the corpus: too rare for character_coverage 0.9995


def small_corpus() -> list[tuple[str, str]]:
    """About 200 made-up pairs of three words each, plus one with a rare character."""
    pairs = []
    for i in range(200):
        words = [i % 16, (5 * i + 3) % 16, (7 * i + 1) % 16]
        pairs.append(("".join(CHINESE[w] for w in words) + "。", " ".join(ENGLISH[w] for w in words) + "."))
    pairs.append((f"我{RARE_CHARACTER}。", "I am sad."))
    return pairs


@pytest.fixture(scope="module")
def trained():
    return train_tokenizer(small_corpus(), TokenizerConfig(vocab_size=8000, joint=True))


@pytest.fixture(scope="module")
def tokenizer(trained) -> Tokenizer:
    return trained[0]


@pytest.fixture(scope="module")
def separate():
    return train_tokenizer(small_corpus(), TokenizerConfig(vocab_size=8000, joint=False))


ENGLISH_SENTENCES = ["I like cats.", "you have books today.", "friends see dogs, tomorrow!"]
CHINESE_SENTENCES = ["我喜欢猫。", "你今天有书。", "朋友明天看狗和水"]
UNSEEN = ["龘", "🙂", "I 🙂 tea", "我喜欢龘。", "Zürich 42"]


def test_vocab_shrinks_to_what_the_corpus_supports(tokenizer, trained):
    """Asking for 8000 pieces on a tiny corpus adapts instead of failing."""
    report = trained[1]
    assert tokenizer.joint
    assert SPECIAL_PIECES + BYTE_PIECES < tokenizer.tgt_vocab_size < 8000
    assert report.vocab_size == report.src_vocab_size == tokenizer.tgt_vocab_size == tokenizer.src_vocab_size


def test_special_ids(tokenizer):
    """The trained SentencePiece models put their special pieces where tt's constants say."""
    for side in (tokenizer.src, tokenizer.tgt):
        assert (side.pad_id(), side.unk_id(), side.bos_id(), side.eos_id()) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert [tokenizer.tgt_piece(i) for i in (UNK_ID, BOS_ID, EOS_ID)] == ["<unk>", "<s>", "</s>"]
    assert tokenizer.encode_src("x")[-1] == tokenizer.encode_tgt("x")[-1] == EOS_ID


@pytest.mark.parametrize("text", ENGLISH_SENTENCES + CHINESE_SENTENCES)
def test_round_trip(tokenizer, text):
    """decode_tgt(encode_tgt(s)) gives back s."""
    assert tokenizer.decode_tgt(tokenizer.encode_tgt(text)) == text


@pytest.mark.parametrize("text", ENGLISH_SENTENCES + CHINESE_SENTENCES + UNSEEN)
def test_encodings_end_in_eos_only(tokenizer, text):
    """Every sequence ends with one EOS; no BOS or PAD inside."""
    for ids in (tokenizer.encode_src(text), tokenizer.encode_tgt(text)):
        assert ids[-1] == EOS_ID
        assert not {PAD_ID, BOS_ID, EOS_ID} & set(ids[:-1])


def test_decode_skips_pad_and_bos(tokenizer):
    ids = tokenizer.encode_tgt("I like tea.")
    assert tokenizer.decode_tgt([BOS_ID, *ids, PAD_ID, PAD_ID]) == "I like tea."


@pytest.mark.parametrize("text", UNSEEN)
def test_unseen_characters_fall_back_to_bytes(tokenizer, text):
    """A character never seen in training is spelled in bytes, never <unk>, and round-trips."""
    ids = tokenizer.encode_tgt(text)
    assert UNK_ID not in ids
    assert any(tokenizer.is_byte(i) for i in ids)
    assert tokenizer.decode_tgt(ids) == text


def test_byte_pieces_spell_utf8(tokenizer):
    """The byte pieces of '龘' are its three UTF-8 bytes."""
    byte_ids = [i for i in tokenizer.encode_tgt("龘") if tokenizer.is_byte(i)]
    assert [tokenizer.tgt_piece(i) for i in byte_ids] == [f"<0x{b:02X}>" for b in "龘".encode()]


def test_report_is_sane(trained):
    report = trained[1]
    assert 0.0 <= report.character_coverage <= 1.0
    assert 0 <= report.byte_pieces <= report.pieces
    assert report.pieces > 0


def test_report_counts_the_rare_character(tokenizer, trained):
    """If the rare training character is left to bytes, the report says so in both fields."""
    report = trained[1]
    rare_in_bytes = any(tokenizer.is_byte(i) for i in tokenizer.encode_src(RARE_CHARACTER))
    assert (report.byte_pieces > 0) == rare_in_bytes
    assert (report.character_coverage < 1.0) == rare_in_bytes


def test_save_and_load_keep_ids(tokenizer, tmp_path):
    """A joint tokenizer saves one file and loads back with identical ids."""
    tokenizer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.model"]
    loaded = Tokenizer.load(tmp_path)
    assert loaded.joint
    assert loaded.tgt_vocab_size == tokenizer.tgt_vocab_size
    for text in ENGLISH_SENTENCES + CHINESE_SENTENCES + UNSEEN:
        assert loaded.encode_src(text) == tokenizer.encode_src(text)
        assert loaded.encode_tgt(text) == tokenizer.encode_tgt(text)


def test_training_is_deterministic(tokenizer):
    """The same corpus and seed give the same pieces."""
    again, _ = train_tokenizer(small_corpus(), TokenizerConfig(vocab_size=8000, joint=True))
    for text in ENGLISH_SENTENCES + CHINESE_SENTENCES:
        assert again.encode_tgt(text) == tokenizer.encode_tgt(text)


def test_separate_vocabularies(separate, tmp_path):
    """joint=False trains one model per side, saves two files, and loads them back."""
    tokenizer, report = separate
    assert not tokenizer.joint
    assert tokenizer.src is not tokenizer.tgt
    assert report.src_vocab_size == tokenizer.src_vocab_size
    assert report.vocab_size == tokenizer.tgt_vocab_size
    for text in CHINESE_SENTENCES:
        assert tokenizer.src.decode(tokenizer.encode_src(text)[:-1]) == text
    for text in ENGLISH_SENTENCES:
        assert tokenizer.decode_tgt(tokenizer.encode_tgt(text)) == text

    tokenizer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.src.model", "tokenizer.tgt.model"]
    loaded = Tokenizer.load(tmp_path)
    assert not loaded.joint
    for text in CHINESE_SENTENCES + ENGLISH_SENTENCES + UNSEEN:
        assert loaded.encode_src(text) == tokenizer.encode_src(text)
        assert loaded.encode_tgt(text) == tokenizer.encode_tgt(text)


def test_separate_vocabularies_fit_their_side(separate):
    """Each side's model learned its own language: Chinese words are whole pieces only in src."""
    tokenizer, _ = separate
    assert len(tokenizer.encode_src("苹果")) < len(tokenizer.encode_tgt("苹果"))
    assert len(tokenizer.encode_tgt("tomorrow")) < len(tokenizer.encode_src("tomorrow"))


def test_each_separate_vocabulary_takes_its_own_size():
    """--tgt-vocab-size sizes the target side alone (the output layer's width); the source keeps --vocab-size."""
    tokenizer, report = train_tokenizer(small_corpus(), TokenizerConfig(vocab_size=8000, joint=False, tgt_vocab_size=300))
    both_large, _ = train_tokenizer(small_corpus(), TokenizerConfig(vocab_size=8000, joint=False))
    assert tokenizer.tgt_vocab_size == report.vocab_size <= 300 < both_large.tgt_vocab_size
    assert tokenizer.src_vocab_size == both_large.src_vocab_size
    small_source, _ = train_tokenizer(small_corpus(), TokenizerConfig(vocab_size=8000, joint=False, src_vocab_size=300))
    assert small_source.src_vocab_size <= 300 and small_source.tgt_vocab_size == both_large.tgt_vocab_size


def test_the_sizes_are_shown_as_one_number_or_two():
    assert vocabulary_sizes(4000, 4000) == "4,000"
    assert vocabulary_sizes(4000, 1500) == "4,000 source, 1,500 target"


def test_load_empty_folder(tmp_path):
    with pytest.raises(UserError, match="tokenizer.model") as err:
        Tokenizer.load(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_load_half_a_separate_pair(separate, tmp_path):
    """A source model without its target model is not a tokenizer."""
    separate[0].save(tmp_path)
    (tmp_path / "tokenizer.tgt.model").unlink()
    with pytest.raises(UserError):
        Tokenizer.load(tmp_path)


def test_load_corrupt_model(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a SentencePiece model"):
        Tokenizer.load(tmp_path)


def test_decoded_text_never_breaks_a_line(tokenizer):
    """Byte pieces can spell a newline; a translation must still be one line and one field."""
    newline = tokenizer.tgt.piece_to_id("<0x0A>")
    tab = tokenizer.tgt.piece_to_id("<0x09>")
    text = tokenizer.decode_tgt([newline, tab, *tokenizer.tgt.encode("ok")])
    assert "\n" not in text and "\t" not in text and text.endswith("ok")


def test_a_vocabulary_too_small_for_the_characters_says_how_large_in_tt_terms():
    import random

    rng = random.Random(0)
    characters = [chr(0x4E00 + i) for i in range(1200)]  # 1,200 CJK characters, each common
    pairs = [("".join(rng.choice(characters) for _ in range(12)), "a sentence") for _ in range(3000)]
    with pytest.raises(UserError, match=r"--vocab-size 300 is too small for this corpus: .* use --vocab-size \d+ or more$") as caught:
        train_tokenizer(pairs, TokenizerConfig(vocab_size=300))
    assert "character_coverage" not in str(caught.value)


def test_a_side_too_small_for_its_characters_names_its_own_option():
    import random

    rng = random.Random(0)
    characters = [chr(0x4E00 + i) for i in range(1200)]
    pairs = [("".join(rng.choice(characters) for _ in range(12)), "a sentence") for _ in range(3000)]
    config = TokenizerConfig(vocab_size=8000, joint=False, src_vocab_size=300)
    with pytest.raises(UserError, match=r"^--src-vocab-size 300 is too small for this corpus: .* use --src-vocab-size \d+ or more$"):
        train_tokenizer(pairs, config)
