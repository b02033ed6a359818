"""SentencePiece model files for other tools: the same pieces, with tt's normalization inside.

tt changes text in one place (tt.data.normalize: NFKC, whitespace) before SentencePiece
sees it, so its SentencePiece models are trained with their own normalization off
("identity"). A tool that hands raw text to the model file (Hugging Face's MarianTokenizer,
CTranslate2's users) would then see full-width `！` where tt saw `!`, and about one Chinese
sentence in ten would be cut into other pieces. `with_nfkc` puts SentencePiece's own NFKC
rule ("nmt_nfkc", which also folds runs of whitespace) into a copy of the file; the pieces,
their ids and scores stay exactly as trained.

A model file is a protocol buffer (ModelProto): pieces are field 1, the normalizer spec
field 3. SentencePiece builds the rule's character map only while training, so a throwaway
model is trained on one line to take its field 3 from; the file's other fields are copied
byte for byte. No protobuf library is needed for that.
"""

from __future__ import annotations

import functools
import io

import sentencepiece as spm

NORMALIZER_FIELD = 3


def with_nfkc(model_file: bytes) -> bytes:
    """The same SentencePiece model, normalizing its input with NFKC and whitespace folding."""
    kept = [raw for number, raw in _fields(model_file) if number != NORMALIZER_FIELD]
    return b"".join(kept) + _nfkc_normalizer()


@functools.cache
def _nfkc_normalizer() -> bytes:
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c d e f g"] * 5), model_writer=proto, model_type="unigram",
        vocab_size=12, hard_vocab_limit=False, normalization_rule_name="nmt_nfkc",
        remove_extra_whitespaces=True, add_dummy_prefix=True, bos_id=-1, pad_id=-1, minloglevel=2,
    )
    (spec,) = [raw for number, raw in _fields(proto.getvalue()) if number == NORMALIZER_FIELD]
    return spec


def _fields(message: bytes) -> list[tuple[int, bytes]]:
    """The top-level fields of a protocol buffer message: (field number, its bytes as encoded)."""
    fields, position = [], 0
    while position < len(message):
        start = position
        key, position = _varint(message, position)
        wire_type = key & 7
        if wire_type == 0:  # a varint
            _, position = _varint(message, position)
        elif wire_type == 1:  # 64 bits
            position += 8
        elif wire_type == 2:  # length-delimited: a string, bytes or a nested message
            length, position = _varint(message, position)
            position += length
        elif wire_type == 5:  # 32 bits
            position += 4
        else:
            raise ValueError(f"not a SentencePiece model: wire type {wire_type} at byte {start}")
        if position > len(message):
            raise ValueError("not a SentencePiece model: a field runs past the end")
        fields.append((key >> 3, message[start:position]))
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("not a SentencePiece model: cut off inside a number")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position
