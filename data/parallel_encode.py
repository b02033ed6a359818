"""Tokenizing on all cores: the cleaned text → token ids, block by block, in corpus order.

    main process                          worker processes (one per core)
    cleaned lines, ~2 MB a block  ─────▶  split, leave out dev sources, SentencePiece,
                                          flatten to the shards' dtype (</s> after each row)
    TokenWriter appends the arrays ◀─────  EncodedBlock, returned in the order sent

SentencePiece's own threads encode a batch in parallel, but splitting the lines and turning
its lists of ids into arrays are Python work on one core, nearly half of preparation's
second pass. Here each block is done whole by one worker, so all of it runs on every core.
Small corpora stay in this process (starting the workers costs more than it saves), through the
same `encode_block`, so either way the shards hold the same bytes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Iterator

import numpy as np
import sentencepiece as spm

from tt.data.tokenizer import EOS_ID, Tokenizer
from tt.data.worker_processes import answers_in_order

PARALLEL_MIN_BYTES = 16 << 20  # smaller cleaned files are encoded in this process (as for cleaning)
BLOCK_BYTES = 1 << 21  # cleaned text per task: ~40,000 short pairs


@dataclass
class EncodedBlock:
    """One block's training pairs as the shards store them."""

    lines: int  # lines read, the held-out ones included (for the progress bar)
    src_ids: np.ndarray  # every row's ids one after the other, each row ending in </s>
    src_lengths: np.ndarray
    tgt_ids: np.ndarray
    tgt_lengths: np.ndarray

    @property
    def pairs(self) -> int:
        return len(self.src_lengths)


@dataclass(frozen=True)
class Encoding:
    """What encoding a block needs: the tokenizer's models (as bytes, to cross to a worker)."""

    src_model: bytes
    tgt_model: bytes
    held_out: frozenset[str]  # dev sources: every pair with one leaves training
    dtype: str  # of the ids (the shards')
    lengths_dtype: str


def encoding_for(tokenizer: Tokenizer, held_out: set[str], dtype: np.dtype, lengths_dtype: np.dtype) -> Encoding:
    return Encoding(
        tokenizer.src.serialized_model_proto(), tokenizer.tgt.serialized_model_proto(), frozenset(held_out),
        np.dtype(dtype).name, np.dtype(lengths_dtype).name,
    )


def encoded_blocks(cleaned: Path, encoding: Encoding, workers: int) -> Iterator[EncodedBlock]:
    """The cleaned file's blocks, encoded, in order; on `workers` processes for a large file."""
    if workers < 2 or cleaned.stat().st_size < PARALLEL_MIN_BYTES:
        models = _Models(encoding)
        for block in text_blocks(cleaned):
            yield encode_block(models, block, threads=max(workers, 1))
        return
    with contextlib.closing(answers_in_order(text_blocks(cleaned), _Models(encoding), workers)) as answers:
        yield from answers


def text_blocks(cleaned: Path) -> Iterator[bytes]:
    """Whole lines of the cleaned file, about BLOCK_BYTES at a time."""
    with open(cleaned, "rb") as handle:
        while lines := handle.readlines(BLOCK_BYTES):
            yield b"".join(lines)


class _Models:
    """The SentencePiece models of an Encoding; called on a block, it encodes it (a worker's task)."""

    def __init__(self, encoding: Encoding):
        self.encoding = encoding
        self.src = spm.SentencePieceProcessor(model_proto=encoding.src_model)
        self.tgt = self.src if encoding.tgt_model == encoding.src_model else spm.SentencePieceProcessor(model_proto=encoding.tgt_model)

    def __call__(self, block: bytes) -> EncodedBlock:
        return encode_block(self, block)

    def __reduce__(self):
        return _Models, (self.encoding,)  # crosses to a worker as its Encoding; the models are built there


def encode_block(models: _Models, block: bytes, threads: int = 1) -> EncodedBlock:
    """Lines "src\\ttgt\\n" → the ids of the pairs whose source is not held out."""
    lines = block.decode("utf-8").split("\n")[:-1]  # the cleaned file ends every line in \n
    held_out = models.encoding.held_out
    pairs = [line.split("\t") for line in lines]
    if held_out:
        pairs = [pair for pair in pairs if pair[0] not in held_out]
    dtype, lengths_dtype = np.dtype(models.encoding.dtype), np.dtype(models.encoding.lengths_dtype)
    src_ids, src_lengths = flatten(models.src.encode([s for s, _ in pairs], num_threads=threads), dtype, lengths_dtype)
    tgt_ids, tgt_lengths = flatten(models.tgt.encode([t for _, t in pairs], num_threads=threads), dtype, lengths_dtype)
    return EncodedBlock(len(lines), src_ids, src_lengths, tgt_ids, tgt_lengths)


def flatten(rows: list[list[int]], dtype: np.dtype, lengths_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """SentencePiece's rows → (one array of all ids, </s> after each row; each row's length with it)."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)) + 1
    flat = np.full(int(lengths.sum()), EOS_ID, dtype=dtype)
    body = np.ones(len(flat), dtype=bool)
    body[np.cumsum(lengths) - 1] = False  # where each row's </s> goes
    flat[body] = np.fromiter(chain.from_iterable(rows), dtype=dtype, count=len(flat) - len(rows))
    return flat, lengths.astype(lengths_dtype)
