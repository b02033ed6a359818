"""Text ↔ token ids with SentencePiece; the special ids (pad, unk, bos, eos) live here only.

A unigram SentencePiece model is trained in-process on the cleaned corpus. Byte fallback
is on, so a character never seen in training is spelled as its UTF-8 bytes (`<0xE4>`...)
instead of collapsing to `<unk>`. By default one joint vocabulary serves both languages
(which lets the model tie its embeddings) where the two languages share their characters,
and one per language where they do not (`tt.data.vocabularies` decides, and says why).

In a model folder the tokenizer is `tokenizer.model` (joint) or `tokenizer.src.model` and
`tokenizer.tgt.model` (separate). Published Hugging Face Marian models number their pieces
with a vocabulary of their own (vocab.json): `MappedTokenizer`.
"""

from __future__ import annotations

import io
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import sentencepiece as spm

from tt.data.atomic import write_atomic
from tt.data.errors import UserError

from tt.data.vocabularies import BYTE_PIECES, SPECIAL_PIECES, plan_vocabularies

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3  # SPECIAL_PIECES of them
_CONTROL_TO_SPACE = {c: " " for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]}
SEPARATE_FILES = ("tokenizer.src.model", "tokenizer.tgt.model")  # one model per language; a joint one is tokenizer.model


@dataclass
class TokenizerConfig:
    vocab_size: int = 4000  # on a 15-minute CPU budget a smaller softmax buys more steps
    # True: one vocabulary for both languages; False: one each; None: joint where the two
    # share their characters, one each where they do not (tt.data.vocabularies says why).
    joint: bool | None = None
    # One side's own size, for separate vocabularies (None: vocab_size, or tt's choice). The
    # target's is the width of the output layer; the source's is only an embedding table.
    src_vocab_size: int | None = None
    tgt_vocab_size: int | None = None
    sample_sentences: int = 300_000  # large corpora train the tokenizer on a random sample
    character_coverage: float = 0.9995  # CJK scripts have many rare characters: leave them to bytes


@dataclass
class TokenizerReport:
    vocab_size: int  # of the target side; equal to the source's when joint
    src_vocab_size: int
    character_coverage: float  # share of character occurrences spelled without byte fallback
    byte_pieces: int  # pieces that fell back to bytes, in the sample
    pieces: int  # all pieces in the sample
    shared_characters: float | None = None  # what tt measured to choose joint or separate (None: not its choice)


class Tokenizer:
    """One SentencePiece model per side (the same object twice when joint)."""

    # tt's own models put the special pieces at SentencePiece's ids; a Marian folder's
    # vocabulary (MappedTokenizer) sets its own.
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, src: spm.SentencePieceProcessor, tgt: spm.SentencePieceProcessor, joint: bool):
        self.src, self.tgt, self.joint = src, tgt, joint

    # ---- sizes and pieces
    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def tgt_piece(self, token_id: int) -> str:
        return self.tgt.id_to_piece(token_id)

    def src_piece(self, token_id: int) -> str:
        return self.src.id_to_piece(token_id)

    def is_byte(self, token_id: int, side: str = "tgt") -> bool:
        return (self.src if side == "src" else self.tgt).is_byte(token_id)

    # ---- encoding: ids never include bos; eos ends every sequence the model sees
    def encode_src(self, text: str) -> list[int]:
        return self.src.encode(text) + [self.eos_id]

    def encode_tgt(self, text: str, end: bool = True) -> list[int]:
        """end=False: without the final </s> (a forced beginning of a translation)."""
        return self.tgt.encode(text) + ([self.eos_id] if end else [])

    def fit_source(self, ids: list[int], positions: int) -> list[int]:
        """A source cut to the encoder's `positions`, keeping its closing </s>: the model
        only ever saw sources that end in one."""
        return ids if len(ids) <= positions else ids[: positions - 1] + [self.eos_id]

    def decode_tgt(self, ids: Sequence[int]) -> str:
        text = self.tgt.decode([i for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)])
        # Byte fallback can spell any byte, a newline or tab included; one translation must
        # stay one line (and one TSV field), so control characters become spaces; pieces
        # that are only spaces leave none at the ends.
        return text.translate(_CONTROL_TO_SPACE).strip()

    # ---- files
    def save(self, folder: Path) -> None:
        for name, data in self.to_files().items():
            write_atomic(folder / name, data)

    def file_names(self) -> list[str]:
        return list(self._files())

    def to_files(self) -> dict[str, bytes]:
        """File name → the SentencePiece model's bytes: what `save` writes (and the prepared
        folder's manifest records the digests of)."""
        return {name: model.serialized_model_proto() for name, model in self._files().items()}

    def _files(self) -> dict[str, spm.SentencePieceProcessor]:
        if self.joint:
            return {"tokenizer.model": self.tgt}
        return dict(zip(SEPARATE_FILES, (self.src, self.tgt)))

    @classmethod
    def from_files(cls, files: dict[str, bytes], folder: Path = Path()) -> "Tokenizer":
        """The tokenizer `to_files` gave the bytes of (`folder` names them in errors)."""
        if "tokenizer.model" in files:
            model = _from_bytes(files["tokenizer.model"], str(folder / "tokenizer.model"))
            return cls(model, model, joint=True)
        return cls(*(_from_bytes(files[name], str(folder / name)) for name in SEPARATE_FILES), joint=False)

    @classmethod
    def load(cls, folder: Path, names: Sequence[str] | None = None) -> "Tokenizer":
        """The tokenizer in `folder`: the joint model if there is one, else the two separate
        ones; or exactly the files `names` (a prepared folder's manifest lists them, so that a
        file left from an earlier preparation is never taken instead)."""
        layouts = [("tokenizer.model",), SEPARATE_FILES]
        for layout in layouts if names is None else [tuple(names)]:
            if layout in layouts and all((folder / name).exists() for name in layout):
                return cls.from_files({name: _read(folder / name) for name in layout}, folder)
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: not a folder (--model takes a model folder: tt's own, or a Hugging Face Marian one)")
        raise UserError(f"{folder}: no tokenizer.model in the model folder")



class MappedTokenizer(Tokenizer):
    """SentencePiece cuts the text into pieces; a vocabulary numbers them (Marian's vocab.json).

    Hugging Face's Marian folders work this way: their ids are not SentencePiece's, a piece
    missing from the vocabulary is <unk>, and the special ids are the vocabulary's ids of
    "<pad>", "<unk>" and "</s>". The decoder starts from the pad id (`bos_id` here).
    """

    def __init__(self, src, tgt, src_vocab: dict[str, int], tgt_vocab: dict[str, int], special: dict[str, str]):
        super().__init__(src, tgt, joint=False)
        self.src_ids, self.tgt_ids = src_vocab, tgt_vocab
        self.src_pieces = {i: piece for piece, i in src_vocab.items()}
        self.tgt_pieces = {i: piece for piece, i in tgt_vocab.items()}
        self.pad_id, self.unk_id, self.eos_id = (src_vocab[special[name]] for name in ("pad", "unk", "eos"))
        self.bos_id = self.pad_id

    @property
    def src_vocab_size(self) -> int:
        return max(self.src_pieces) + 1

    @property
    def tgt_vocab_size(self) -> int:
        return max(self.tgt_pieces) + 1

    def src_piece(self, token_id: int) -> str:
        return self.src_pieces.get(token_id, f"<id {token_id}>")

    def tgt_piece(self, token_id: int) -> str:
        return self.tgt_pieces.get(token_id, f"<id {token_id}>")

    def is_byte(self, token_id: int, side: str = "tgt") -> bool:
        return bool(_BYTE_PIECE.fullmatch(self.src_piece(token_id) if side == "src" else self.tgt_piece(token_id)))

    def encode_src(self, text: str) -> list[int]:
        # A multilingual model's target language comes first, as one piece: ">>fra<< Bonjour".
        code = re.match(r">>[^<>\s]+<<", text)
        first = [self.src_ids.get(code.group(), self.unk_id)] if code else []
        text = text[code.end() :] if code else text
        return first + self._ids(self.src, self.src_ids, text) + [self.eos_id]

    def encode_tgt(self, text: str, end: bool = True) -> list[int]:
        return self._ids(self.tgt, self.tgt_ids, text) + ([self.eos_id] if end else [])

    def _ids(self, model: spm.SentencePieceProcessor, vocab: dict[str, int], text: str) -> list[int]:
        return [vocab.get(piece, self.unk_id) for piece in model.encode(text, out_type=str)]

    def decode_tgt(self, ids: Sequence[int]) -> str:
        pieces = [self.tgt_piece(i) for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)]
        return self.tgt.decode_pieces(pieces).translate(_CONTROL_TO_SPACE).strip()


_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def load_sentencepiece(path: Path) -> spm.SentencePieceProcessor:
    return _from_bytes(_read(path), str(path))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


def vocabulary_sizes(src: int, tgt: int) -> str:
    """"4,000", or "4,000 source, 1,500 target" for separate vocabularies of two sizes."""
    return f"{tgt:,}" if src == tgt else f"{src:,} source, {tgt:,} target"


def _from_bytes(data: bytes, where: str) -> spm.SentencePieceProcessor:
    if not data:  # SentencePiece loads nothing without complaint, then fails (and logs) at first use
        raise UserError(f"{where}: an empty file, not a SentencePiece model")
    try:
        return spm.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, OSError) as err:
        raise UserError(f"{where}: not a SentencePiece model ({err})") from None


def train_tokenizer(
    pairs: Sequence[tuple[str, str]], config: TokenizerConfig, seed: int = 1
) -> tuple[Tokenizer, TokenizerReport]:
    """Train on (a sample of) the cleaned pairs; the vocabulary shrinks to what the text supports."""
    rng = random.Random(seed)
    sample = list(pairs) if len(pairs) <= config.sample_sentences else rng.sample(list(pairs), config.sample_sentences)
    plan = plan_vocabularies(
        sample, config.vocab_size, config.joint, config.src_vocab_size, config.tgt_vocab_size, config.character_coverage,
    )
    if plan.joint:
        model = _train_one([s for s, _ in sample] + [t for _, t in sample], config, plan.tgt_size, plan.tgt_option, seed)
        tokenizer = Tokenizer(model, model, joint=True)
    else:
        tokenizer = Tokenizer(
            _train_one([s for s, _ in sample], config, plan.src_size, plan.src_option, seed),
            _train_one([t for _, t in sample], config, plan.tgt_size, plan.tgt_option, seed),
            joint=False,
        )
    return tokenizer, replace(measure(tokenizer, sample[:5000]), shared_characters=plan.shared)


def _train_one(sentences: list[str], config: TokenizerConfig, asked: int, option: str, seed: int) -> spm.SentencePieceProcessor:
    # Every character needs room: a vocabulary smaller than specials + bytes + the
    # distinct characters cannot be trained, so ask for at least that.
    distinct = len(set("".join(sentences)))
    floor = SPECIAL_PIECES + BYTE_PIECES + min(distinct, 200) + 8
    vocab_size = max(asked, floor)
    for _attempt in range(3):
        try:
            return _run_trainer(sentences, config, vocab_size, seed)
        except RuntimeError as err:
            # Many distinct characters (CJK) each need a piece of their own: say how many, in
            # tt's terms (SentencePiece's own message points at its command-line flags).
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(err))
            if needed:
                raise UserError(
                    f"{option} {asked} is too small for this corpus: its characters alone need "
                    f"{int(needed.group(1)):,} pieces; use {option} {int(needed.group(1)) + 100} or more"
                ) from None
            # A tiny corpus cannot fill a large vocabulary; SentencePiece says how much it can.
            match = re.search(r"value <= (\d+)", str(err))
            if not match or int(match.group(1)) >= vocab_size:
                raise UserError(f"tokenizer training failed: {err}") from None
            vocab_size = int(match.group(1))
    raise UserError("tokenizer training failed: could not find a vocabulary size the corpus supports")


def _run_trainer(sentences: list[str], config: TokenizerConfig, vocab_size: int, seed: int) -> spm.SentencePieceProcessor:
    proto = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=proto,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a soft limit: fewer pieces if the corpus cannot support more
        character_coverage=config.character_coverage,
        byte_fallback=True,
        normalization_rule_name="identity",  # tt.data.normalize already did NFKC, once
        remove_extra_whitespaces=False,
        split_digits=True,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        max_sentence_length=1 << 14,
        num_threads=max(1, os.cpu_count() or 1),
        minloglevel=2,  # SentencePiece's own logging would flood the terminal
    )
    return spm.SentencePieceProcessor(model_proto=proto.getvalue())


def measure(tokenizer: Tokenizer, sample: Sequence[tuple[str, str]]) -> TokenizerReport:
    """Character coverage and byte fallback on a sample of the training text."""
    characters: Counter[str] = Counter()
    byte_pieces = pieces = 0
    for src, tgt in sample:
        for side, text in (("src", src), ("tgt", tgt)):
            characters.update(text)
            model = tokenizer.src if side == "src" else tokenizer.tgt
            ids = model.encode(text)
            pieces += len(ids)
            byte_pieces += sum(1 for i in ids if model.is_byte(i))
    covered = sum(n for ch, n in characters.items() if _spelled_without_bytes(tokenizer, ch))
    total = sum(characters.values())
    return TokenizerReport(
        vocab_size=tokenizer.tgt_vocab_size,
        src_vocab_size=tokenizer.src_vocab_size,
        character_coverage=covered / total if total else 1.0,
        byte_pieces=byte_pieces,
        pieces=pieces,
    )


def _spelled_without_bytes(tokenizer: Tokenizer, character: str) -> bool:
    if character == " ":
        return True  # spaces become the ▁ marker, never bytes
    models = (tokenizer.tgt,) if tokenizer.joint else (tokenizer.src, tokenizer.tgt)
    return any(not any(model.is_byte(i) for i in model.encode(character)) for model in models)
