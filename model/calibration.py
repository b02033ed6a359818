"""Calibration: when the model is p sure of its top token, is it right a fraction p of the time?

Under teacher forcing every reference position gives one (confidence, correct) pair: the
probability of the model's argmax, and whether that argmax is the reference token. Pairs are
binned by confidence; a calibrated model's bins have accuracy ≈ mean confidence.

    ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|        (expected calibration error)

Label smoothing trains toward a target that never puts all mass on one token, which
lowers confidence; on an over-confident model that lowers the ECE.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CalibrationBin:
    low: float
    high: float
    count: int
    confidence: float  # mean probability of the argmax in the bin
    accuracy: float  # share of those argmaxes equal to the reference token


def calibration(confidences: list[float], correct: list[bool], bins: int = 10) -> tuple[list[CalibrationBin], float]:
    """Equal-width bins over [0, 1]; returns the bins and the ECE."""
    assert len(confidences) == len(correct)
    sums = [[0, 0.0, 0] for _ in range(bins)]  # count, Σ confidence, Σ correct
    for p, right in zip(confidences, correct):
        b = min(int(p * bins), bins - 1)
        sums[b][0] += 1
        sums[b][1] += p
        sums[b][2] += int(right)
    total = max(len(confidences), 1)
    table, ece = [], 0.0
    for b, (n, conf, acc) in enumerate(sums):
        if n:
            table.append(CalibrationBin(b / bins, (b + 1) / bins, n, conf / n, acc / n))
            ece += n / total * abs(acc / n - conf / n)
    return table, ece
