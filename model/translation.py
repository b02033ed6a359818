"""What translating one text gives back: a plain dataclass, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tt.model.decode import Hypothesis


@dataclass
class Translation:
    source: str  # as given
    translation: str
    src_pieces: list[str]  # what the encoder saw, </s> included
    hypothesis: Hypothesis | None  # None for an empty line, and on the quick path (tt.model.numpy_model)
    n_best: list[tuple[float, str]] | None = None  # (log-probability, text): --n-best (best first) or --n samples
    truncated_from: int | None = None  # source pieces before cutting to the model's limit
    unfinished: bool = False  # decoding reached its length limit before </s>: the translation may be cut short
