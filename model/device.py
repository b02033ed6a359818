"""Where the arithmetic runs and in what precision: `--device` and `--precision` → torch terms.

    --device auto|cpu|cuda        auto: the GPU when torch sees one, else the CPU
    --precision auto|fp32|bf16    auto: bfloat16 where the hardware does it fast (CUDA GPUs
                                  from Ampere on; CPUs with AVX-512 BF16 or AMX), else float32

bfloat16 is used through autocast: matrix products run in bfloat16 while the weights, the
optimizer's moments and the loss stay float32 ("mixed precision"). bfloat16 keeps float32's
exponent range, so unlike float16 it needs no loss scaling.
"""

from __future__ import annotations

import contextlib

import torch

from tt.data.errors import UserError
from tt.model.decode_config import check_device, check_precision

def resolve_device(name: str) -> torch.device:
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA GPU here (is this torch build a CPU-only one?)")
    return torch.device(name)


def cpu_bf16_supported() -> bool:
    try:
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:
        return False


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_bf16_supported()


def resolve_precision(precision: str, device: torch.device = torch.device("cpu")) -> str:
    check_precision(precision)
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` for "bf16"; nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
