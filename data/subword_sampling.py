"""Subword regularization: each time a pair comes round, its sentences cut into pieces anew.

A unigram SentencePiece model knows many ways to spell a sentence in its pieces, each with a
probability, and tokenizing picks the likeliest: "▁Tom ▁got ▁into ▁trouble .". Trained on a
small corpus for dozens of epochs, a model sees each sentence spelled that one way and learns
the spellings by heart. Here every batch is spelled afresh, sampled from the tokenizer's
own distribution sharpened by α (a spelling x is drawn with probability ∝ P(x)^α; Kudo,
2018): one epoch "▁Tom ▁got ▁into ▁trouble .", another "▁To m ▁go t ▁into ▁trouble .". The
words are the same, the pieces vary, and the model has to learn how pieces build words.
Smaller α spells more variously (and longer); dev evaluation and translation always use the
likeliest spelling.

The batch's rows are decoded back to their text (exact: tt's tokenizer normalizes nothing
itself and falls back to bytes rather than <unk>), SentencePiece lists each text's 64 likeliest
spellings, and one is drawn with probability ∝ P(x)^α, P(x) the product of its pieces'
probabilities: in the main process, 10 to 20 milliseconds a batch. The draw is ours, from a
generator seeded by (seed, epoch, batch), so a run and a resumed run see the same spellings.
SentencePiece's own sampler (which draws from every spelling, not the 64 likeliest) cannot
give that: its generator, Abseil's, mixes a salt of each process into any seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sentencepiece as spm

from tt.data.tokenizer import EOS_ID, Tokenizer


@dataclass(frozen=True)
class SubwordSampler:
    tokenizer: Tokenizer
    alpha: float  # SentencePiece's α: the sharpness of the distribution spellings are drawn from
    seed: int
    max_length: int  # the longest row the model takes, </s> included: a longer sample keeps the usual spelling

    def __post_init__(self):  # ln p of each piece, source then target (the same model when joint)
        object.__setattr__(self, "log_probs", (piece_log_probs(self.tokenizer.src), piece_log_probs(self.tokenizer.tgt)))

    def __call__(self, src_rows: Sequence[Sequence[int]], tgt_rows: Sequence[Sequence[int]], epoch: int, batch: int):
        """A batch's (source rows, target rows), each row spelled anew; rows end in </s> as given."""
        return (
            self._respell(self.tokenizer.src, src_rows, (self.seed, epoch, batch, 0)),
            self._respell(self.tokenizer.tgt, tgt_rows, (self.seed, epoch, batch, 1)),
        )

    def _respell(self, model: spm.SentencePieceProcessor, rows, where: tuple[int, ...]) -> list[list[int]]:
        texts = model.decode([list(row[:-1]) for row in rows])  # each row ends in </s>
        candidates = model.nbest_encode(texts, out_type=int, nbest_size=CANDIDATES)  # deterministic
        log_probs = self.log_probs[model is self.tokenizer.tgt]
        sampled = draw(candidates, log_probs, self.alpha, np.random.default_rng(np.random.SeedSequence(where)))
        return [ids + [EOS_ID] if len(ids) < self.max_length else list(row) for ids, row in zip(sampled, rows)]


CANDIDATES = 64  # spellings listed per text: the draw is among these


def draw(candidates: list[list[list[int]]], log_probs: np.ndarray, alpha: float, rng: np.random.Generator) -> list[list[int]]:
    """One spelling per text, drawn with probability ∝ P(x)^α = exp(α · Σ ln p(piece)).

    All texts at once by the Gumbel-max trick: adding independent Gumbel noise to each
    α · ln P(x) and taking each text's largest is exactly a draw from that distribution.
    """
    counts = np.fromiter((len(spellings) for spellings in candidates), dtype=np.int64, count=len(candidates))
    lengths = np.fromiter((len(x) for spellings in candidates for x in spellings), dtype=np.int64, count=int(counts.sum()))
    ids = np.fromiter(
        (piece for spellings in candidates for x in spellings for piece in x), dtype=np.int64, count=int(lengths.sum())
    )
    ln_p = np.add.reduceat(log_probs[ids], np.concatenate(([0], np.cumsum(lengths)[:-1])))  # each spelling's ln P(x)
    keys = alpha * ln_p + rng.gumbel(size=len(ln_p))
    text_of = np.repeat(np.arange(len(candidates)), counts)
    order = np.lexsort((-keys, text_of))  # by text, then by key, largest first
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    best = order[starts] - starts  # each text's largest key, as an index into its own spellings
    return [spellings[int(i)] for spellings, i in zip(candidates, best)]


def piece_log_probs(model: spm.SentencePieceProcessor) -> np.ndarray:
    """ln p of each piece in the unigram model, by id."""
    return np.array([model.get_score(i) for i in range(model.get_piece_size())], dtype=np.float64)
