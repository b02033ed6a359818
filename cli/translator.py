"""Translating a list of texts: text in → normalized → source ids → decoder → target ids → text (and numbers).

The model is loaded once per process; input is read and translated in chunks, so a long
file streams through a pipe instead of waiting for its end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch

from tt.data.normalize import normalize
from tt.data.tokenizer import EOS_ID, Tokenizer
from tt.model.checkpoint import load_model_folder
from tt.model.decode import DecodeConfig, Hypothesis, greedy_decode
from tt.model.transformer import Transformer


@dataclass
class Translation:
    source: str  # as given
    translation: str
    src_pieces: list[str]  # what the encoder saw, </s> included
    hypothesis: Hypothesis | None  # None for an empty line


class Translator:
    def __init__(self, folder: Path):
        self.model, self.tokenizer, self.record = load_model_folder(folder)
        self.model: Transformer
        self.tokenizer: Tokenizer

    def translate(self, texts: list[str], config: DecodeConfig, inspect: bool = False, attention: bool = False, lens: bool = False) -> list[Translation]:
        normalized = [normalize(text) for text in texts]
        work = [i for i, text in enumerate(normalized) if text]
        src_ids = [self.tokenizer.encode_src(normalized[i]) for i in work]
        hyps = greedy_decode(self.model, src_ids, config, keep_distributions=inspect, attention=attention, lens=lens) if work else []
        out = [Translation(text, "", [], None) for text in texts]
        for index, ids, hyp in zip(work, src_ids, hyps):
            out[index] = Translation(
                source=texts[index],
                translation=self.tokenizer.decode_tgt(hyp.tokens),
                src_pieces=[self.tokenizer.src_piece(i) for i in ids],
                hypothesis=hyp,
            )
        return out

    def piece(self, token_id: int) -> str:
        return self.tokenizer.tgt_piece(token_id)


def entropy(log_probs: torch.Tensor) -> float:
    """H(p) = −Σ p ln p, in nats."""
    return float(-(log_probs.exp() * log_probs).sum())


def top_k(log_probs: torch.Tensor, k: int) -> list[tuple[int, float]]:
    values, ids = log_probs.topk(min(k, log_probs.shape[-1]))
    return [(int(i), math.exp(float(v))) for v, i in zip(values, ids)]


def to_json(result: Translation, translator: Translator, k: int) -> dict:
    record: dict = {"source": result.source, "translation": result.translation, "steps": []}
    hyp = result.hypothesis
    if hyp is None:
        return record
    for token, log_p, step in zip(hyp.tokens, hyp.token_log_probs, hyp.steps or [None] * len(hyp.tokens)):
        item: dict = {"token": translator.piece(token), "prob": math.exp(log_p)}
        if step is not None:
            item["entropy"] = entropy(step.log_probs)
            item["top"] = [{"token": translator.piece(i), "prob": p} for i, p in top_k(step.log_probs, k)]
        record["steps"].append(item)
    return record


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line.rstrip("\r\n"))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ends_with_eos(hyp: Hypothesis) -> bool:
    return bool(hyp.tokens) and hyp.tokens[-1] == EOS_ID
