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
itself and falls back to bytes rather than <unk>) and encoded again with sampling, in the
main process, a few milliseconds a batch. SentencePiece's sampler is seeded from
(seed, epoch, batch) before each call, which starts a fresh thread whose generator takes
that seed, so a run and a resumed run see the same spellings.
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

    def __call__(self, src_rows: Sequence[Sequence[int]], tgt_rows: Sequence[Sequence[int]], epoch: int, batch: int):
        """A batch's (source rows, target rows), each row spelled anew; rows end in </s> as given."""
        return (
            self._respell(self.tokenizer.src, src_rows, (self.seed, epoch, batch, 0)),
            self._respell(self.tokenizer.tgt, tgt_rows, (self.seed, epoch, batch, 1)),
        )

    def _respell(self, model: spm.SentencePieceProcessor, rows, where: tuple[int, ...]) -> list[list[int]]:
        texts = model.decode([list(row[:-1]) for row in rows])  # each row ends in </s>
        spm.set_random_generator_seed(int(np.random.SeedSequence(where).generate_state(1)[0]))
        # One thread: a new one each call, its generator seeded just above, so the same
        # rows and seed give the same spellings, whatever ran before.
        sampled = model.encode(texts, enable_sampling=True, alpha=self.alpha, nbest_size=-1, num_threads=1)
        return [ids + [EOS_ID] if len(ids) < self.max_length else list(row) for ids, row in zip(sampled, rows)]
