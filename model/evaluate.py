"""Scores of translations against references: BLEU and chrF, computed by sacrebleu.

sacrebleu is the field's reference implementation: its default tokenization (13a) and
settings make our numbers comparable with published ones, and its signature records
exactly how they were computed. References are used exactly as given.
"""

from __future__ import annotations

from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass
class Scores:
    bleu: float
    chrf: float
    sentences: int
    bleu_signature: str
    chrf_signature: str


def score_corpus(hypotheses: list[str], references: list[str]) -> Scores:
    assert len(hypotheses) == len(references), "one hypothesis per reference"
    bleu, chrf = BLEU(), CHRF()
    return Scores(
        bleu=bleu.corpus_score(hypotheses, [references]).score,
        chrf=chrf.corpus_score(hypotheses, [references]).score,
        sentences=len(references),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )
