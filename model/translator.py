"""Translating a list of texts: text in → normalized → source ids → decoder → target ids → text (and numbers).

The model is loaded once per process; input is read and translated in chunks, so a long
file streams through a pipe instead of waiting for its end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.data.tokenizer import Tokenizer
from tt.model.folders import open_model
from tt.model.device import resolve_device
from tt.model.decode import DecodeConfig, Step, greedy_decode
from tt.model.beam import BeamConfig, beam_decode
from tt.model.sampling import Sampler
from tt.model.transformer import Transformer
from tt.model.translation import Translation


@dataclass
class Search:
    """How each next token is chosen: greedy (the default), beam search, or sampling."""

    beam: BeamConfig = field(default_factory=lambda: BeamConfig(beam=1))
    sampler: Sampler | None = None
    samples: int = 1  # outputs per input when sampling
    prefix: str | None = None  # forced start of every output (greedy and sampling)

    @property
    def outputs(self) -> int:
        return self.samples if self.sampler is not None else self.beam.n_best

    @property
    def uses_beam(self) -> bool:
        return self.sampler is None and (self.beam.beam > 1 or self.beam.n_best > 1)


@dataclass
class AttentionView:
    """Which cross-attention weights to show: one layer, one head or the mean over heads."""

    layer: int | None = None  # 1-based; None: the last decoder layer
    head: int | None = None  # 1-based; None: the mean over the layer's heads


class Translator:
    def __init__(self, folder: Path, device: str = "cpu"):
        self.model, self.tokenizer, self.record = open_model(folder)
        self.model.to(resolve_device(device))
        self.model: Transformer
        self.tokenizer: Tokenizer

    def translate(
        self,
        texts: list[str],
        config: DecodeConfig,
        inspect: bool = False,
        attention: bool = False,
        lens: bool = False,
        search: Search | None = None,
    ) -> list[Translation]:
        """One Translation per text; empty lines stay empty and cost nothing."""
        search = search or Search()
        normalized = [normalize(text) for text in texts]
        work = [i for i, text in enumerate(normalized) if text]
        src_ids = [self.tokenizer.encode_src(normalized[i]) for i in work]
        # The encoder has max_positions positions: a longer source is cut, keeping its </s>.
        limit = self.model.config.max_positions
        lengths = [len(ids) for ids in src_ids]
        src_ids = [self.tokenizer.fit_source(ids, limit) for ids in src_ids]
        out = [Translation(text, "", [], None) for text in texts]
        if not work:
            return out
        prefix = self.tokenizer.encode_tgt(normalize(search.prefix), end=False) if search.prefix else None
        keep = dict(keep_distributions=inspect, attention=attention, lens=lens)
        if search.uses_beam:
            ranked = [[h for _, h in items] for items in beam_decode(self.model, src_ids, search.beam, config)]
        elif search.sampler is not None:
            n = search.samples
            repeated = [ids for ids in src_ids for _ in range(n)]
            drawn = greedy_decode(self.model, repeated, config, sampler=search.sampler, prefixes=[prefix] * len(repeated) if prefix else None, **keep)
            ranked = [drawn[i * n : (i + 1) * n] for i in range(len(src_ids))]
        else:
            hyps = greedy_decode(self.model, src_ids, config, prefixes=[prefix] * len(src_ids) if prefix else None, **keep)
            ranked = [[h] for h in hyps]
        for index, ids, hyps, length in zip(work, src_ids, ranked, lengths):
            out[index] = Translation(
                source=texts[index],
                translation=self.tokenizer.decode_tgt(hyps[0].tokens),
                src_pieces=[self.tokenizer.src_piece(i) for i in ids],
                hypothesis=hyps[0],
                n_best=[(h.log_prob, self.tokenizer.decode_tgt(h.tokens)) for h in hyps] if search.outputs > 1 else None,
                truncated_from=length if length > len(ids) else None,
                unfinished=bool(hyps[0].tokens) and hyps[0].tokens[-1] != self.model.config.eos_id,
            )
        return out

    def piece(self, token_id: int) -> str:
        return self.tokenizer.tgt_piece(token_id)

    def check_view(self, view: AttentionView) -> None:
        layers, heads = self.model.config.n_layers, self.model.config.n_heads
        if view.layer is not None and not 1 <= view.layer <= layers:
            raise UserError(f"--attention-layer {view.layer}: the model's decoder has layers 1 to {layers}")
        if view.head is not None and not 1 <= view.head <= heads:
            raise UserError(f"--attention-head {view.head}: the model has heads 1 to {heads}")


def segmentation_differs(tokenizer: Tokenizer, ids: list[int]) -> bool:
    """Would `tt score` of this text see other pieces? Its text is normalized and re-encoded.

    The decoder may spell a word in pieces that the deterministic encoder would not choose
    (or add spaces that normalization removes); then scoring the text scores other tokens.
    A final </s> is left out of the comparison: it is not a matter of segmentation.
    """
    pieces = ids[:-1] if ids and ids[-1] == tokenizer.eos_id else list(ids)
    return tokenizer.encode_tgt(normalize(tokenizer.decode_tgt(pieces)))[:-1] != pieces


def attention_rows(result: Translation, view: AttentionView) -> list[list[float]]:
    """Cross-attention, one row per step, one column per source piece (</s> included).

    The weights of padding positions are 0, so cutting the padded columns leaves rows that
    still sum to 1.
    """
    hyp = result.hypothesis
    if hyp is None or not hyp.steps or hyp.steps[0].attention is None:
        return []
    layer = (view.layer or len(hyp.steps[0].attention)) - 1
    rows = []
    for step in hyp.steps:
        weights = step.attention[layer]  # (n_heads, src_len_padded)
        row = weights[view.head - 1] if view.head is not None else weights.mean(dim=0)
        rows.append(row[: len(result.src_pieces)].tolist())
    return rows


def lens_layers(step: Step, token: int, translator: Translator) -> list[dict]:
    """Logit lens: each decoder layer's output read through the output head.

    Per layer: "token", the piece that layer alone would pick, and "prob", the probability
    it gives the token finally chosen (the last layer's equals the step's own probability).
    """
    return [
        {"layer": number, "token": translator.piece(int(log_probs.argmax())), "prob": math.exp(float(log_probs[token]))}
        for number, log_probs in enumerate(step.layer_log_probs or [], start=1)
    ]


def entropy(log_probs: torch.Tensor) -> float:
    """H(p) = −Σ p ln p, in nats."""
    return float(-(log_probs.exp() * log_probs).sum())


def top_k(log_probs: torch.Tensor, k: int) -> list[tuple[int, float]]:
    values, ids = log_probs.topk(min(k, log_probs.shape[-1]))
    return [(int(i), math.exp(float(v))) for v, i in zip(values, ids)]


def to_json(result: Translation, translator: Translator, k: int, view: AttentionView | None = None) -> dict:
    """`view` adds the cross-attention; a hypothesis decoded with the lens adds each step's layers."""
    record: dict = {"source": result.source, "translation": result.translation, "steps": []}
    hyp = result.hypothesis
    if hyp is None:
        return record
    for token, log_p, step in zip(hyp.tokens, hyp.token_log_probs, hyp.steps or [None] * len(hyp.tokens)):
        item: dict = {"token": translator.piece(token), "prob": math.exp(log_p)}
        if step is not None:
            item["entropy"] = entropy(step.log_probs)
            item["top"] = [{"token": translator.piece(i), "prob": p} for i, p in top_k(step.log_probs, k)]
            if step.layer_log_probs:
                item["layers"] = lens_layers(step, token, translator)
        record["steps"].append(item)
    record["segmentation_differs"] = segmentation_differs(translator.tokenizer, hyp.tokens)
    record["unfinished"] = result.unfinished
    if view is not None:
        record["source_pieces"] = result.src_pieces
        record["attention"] = attention_rows(result, view)
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
