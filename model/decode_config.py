"""How decoding runs (how long, how batched, where, in what precision): plain settings and
their checks, importable without torch (the quick path of `tt translate` reads them too).
tt.model.device turns --device and --precision into torch terms."""

from __future__ import annotations

from dataclasses import dataclass

from tt.data.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def check_device(name: str) -> None:
    if name not in DEVICES:
        raise UserError(f"--device {name!r}: expected one of {', '.join(DEVICES)}")


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise UserError(f"--precision {name!r}: expected one of {', '.join(PRECISIONS)}")


@dataclass
class DecodeConfig:
    max_len_ratio: float = 2.0  # output pieces allowed per source piece …
    max_len_extra: int = 10  # … plus this many
    batch_size: int = 64  # sentences decoded together
    precision: str = "fp32"  # fp32: the same text for any batch size, probabilities to ~1e-6; bf16: faster
    fixed_length: int | None = None  # benchmarks: exactly this many tokens, </s> never chosen
    device: str = "auto"  # where a Translator puts the model: auto (CUDA when present) | cpu | cuda


def output_limit(src_len: int, config: DecodeConfig, max_positions: int) -> int:
    """Most target pieces for a source of `src_len` pieces, </s> included."""
    limit = int(src_len * config.max_len_ratio) + config.max_len_extra
    return max(1, min(limit, max_positions - 1))
