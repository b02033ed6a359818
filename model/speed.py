"""How fast tt is: the measurements behind `tt bench`, each a plain function.

Training speed counts non-padding target tokens per second through the real training
step; decoding speed counts output tokens (greedy, beam, and a fixed-length measurement
where every sentence makes exactly the same number of tokens, so that tt and CTranslate2
do the same work). `flops_per_target_token` turns a speed into model-FLOPs utilisation.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from tt.data.batches import BatchStream
from tt.data.tokenizer import EOS_ID
from tt.model.beam import BeamConfig, beam_decode
from tt.model.decode import DecodeConfig, greedy_decode
from tt.model.train import TrainConfig, Trainer
from tt.model.transformer import ModelConfig, Transformer, count_parameters


def synchronize(device: torch.device) -> None:
    """A GPU runs work queued by the CPU later: wait for it before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work: Callable[[], None], seconds: float, warmup: int = 1, device: torch.device = torch.device("cpu")) -> tuple[int, float]:
    """Run `work` repeatedly for about `seconds`; (repetitions, elapsed)."""
    for _ in range(warmup):
        work()
    synchronize(device)
    count, started = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - started < seconds:
        work()
        count += 1
        if count % 16 == 0:
            synchronize(device)  # keep the queue short, so the clock tracks the work
    synchronize(device)
    return count, time.perf_counter() - started


def matmul_size(device: torch.device) -> int:
    """The side of the square matmul measured: a GPU needs a bigger product to reach its peak."""
    return 1024 if device.type == "cpu" else 8192


def matmul_gflops(dtype: torch.dtype, size: int | None = None, seconds: float = 2.0, device: torch.device = torch.device("cpu"),
                  shape: tuple[int, int, int] | None = None) -> float:
    """GFLOP/s of an (m × k) @ (k × n) product: `shape` = (m, k, n), else a square of side `size`."""
    size = size or matmul_size(device)
    m, k, n = shape or (size, size, size)
    a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
    count, elapsed = timed(lambda: a @ b, seconds, device=device)
    return 2 * m * k * n * count / elapsed / 1e9


def matmul_peak(dtype: torch.dtype, config: ModelConfig, rows: int, device: torch.device, seconds: float = 1.5) -> tuple[float, str]:
    """The best GFLOP/s over the square yardstick and the model's own linear shapes (a batch
    of `rows` tokens through d_model → d_ff and back): one size alone is not a stable peak,
    some machines run the model's thin products faster than the square. (GFLOP/s, "m×k×n")."""
    square = matmul_size(device)
    shapes = [(square, square, square), (rows, config.d_model, config.d_ff), (rows, config.d_ff, config.d_model)]
    figures = {shape: matmul_gflops(dtype, device=device, shape=shape, seconds=seconds) for shape in shapes}
    best = max(figures, key=figures.get)
    return figures[best], "×".join(map(str, best))


def flops_per_target_token(config: ModelConfig, src_per_tgt: float) -> float:
    """Training FLOPs per target token: 3 passes (forward + 2× backward) × 2 FLOPs per weight use.

    Each source token uses the encoder's matrices once; each target token the decoder's and
    the output projection (d_model × V). Attention scores add a little more, left out here
    as is usual for model-FLOPs utilisation.
    """
    d, ff, n = config.d_model, config.d_ff, config.n_layers
    encoder = n * (4 * d * d + 2 * d * ff)
    decoder = n * (8 * d * d + 2 * d * ff)  # self- and cross-attention
    output = d * config.tgt_vocab_size
    return 6 * (encoder * src_per_tgt + decoder + output)


def train_speed(config: ModelConfig, src_ids, tgt_ids, batch_tokens: int, precision: str, seconds: float, device: str = "cpu") -> dict:
    torch.manual_seed(0)
    model = Transformer(config)
    stream = BatchStream(src_ids, tgt_ids, batch_tokens, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(batch_tokens=batch_tokens, precision=precision, device=device)
        trainer = Trainer(model, None, stream, None, config, Path(folder), dict, time.monotonic())
        batches = stream.rows()
        for _ in range(2):
            trainer.train_step(next(batches))
        tokens = padded = steps = 0
        started = time.perf_counter()
        while steps == 0 or time.perf_counter() - started < seconds:
            rows = next(batches)
            totals, _ = trainer.train_step(rows)
            tokens += totals.n_tokens
            padded += len(rows) * int(stream.tgt_lengths[rows].max())  # the padded target tensor
            steps += 1
        elapsed = time.perf_counter() - started
    return {"tok_s": tokens / elapsed, "steps": steps, "padding": 1 - tokens / padded, "parameters": count_parameters(model)}


def decode_speed(model, src_ids, batch_size: int, beam: int, seconds_cap: float = 20.0) -> dict:
    config = DecodeConfig(batch_size=batch_size)
    done = out_tokens = 0
    started = time.perf_counter()
    step = max(batch_size, 1) * (1 if batch_size > 1 else 16)
    for start in range(0, len(src_ids), step):
        chunk = src_ids[start : start + step]
        if beam == 1:
            out_tokens += sum(len(h.tokens) for h in greedy_decode(model, chunk, config))
        else:
            out_tokens += sum(len(r[0][1].tokens) for r in beam_decode(model, chunk, BeamConfig(beam=beam), config))
        done += len(chunk)
        if time.perf_counter() - started > seconds_cap:
            break
    elapsed = time.perf_counter() - started
    return {"sentences_s": done / elapsed, "tok_s": out_tokens / elapsed, "sentences": done}


def fixed_length_sources(vocab: int, sentences: int = 1154, src_len: int = 12) -> list[list[int]]:
    """The fixed-length measurement's input: random `src_len`-piece sources (</s> included)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(4, vocab, (src_len - 1,), generator=generator).tolist() + [EOS_ID] for _ in range(sentences)]


def fixed_length_decode(model, src: list[list[int]], out_len: int = 20, use_cache: bool = True) -> tuple[list, float]:
    """Greedy at batch 64, exactly `out_len` tokens per sentence: (hypotheses, seconds)."""
    config = DecodeConfig(batch_size=64, fixed_length=out_len)
    started = time.perf_counter()
    hyps = greedy_decode(model, src, config, use_cache=use_cache)
    return hyps, time.perf_counter() - started


def fixed_length_speed(model, vocab: int, sentences: int = 1154, src_len: int = 12, out_len: int = 20, use_cache: bool = True) -> float:
    """Output tokens/s of the fixed-length measurement (the tokens actually made, counted)."""
    hyps, elapsed = fixed_length_decode(model, fixed_length_sources(vocab, sentences, src_len), out_len, use_cache)
    return sum(len(h.tokens) for h in hyps) / elapsed


def ct2_translator(model, tokenizer, quantization: str, device: torch.device):
    """The model exported to CTranslate2 (in a temporary folder) and loaded, with torch's thread count."""
    import ctranslate2

    from tt.model.ct2 import write_ct2

    use_cuda = device.type == "cuda" and ctranslate2.get_cuda_device_count() > 0
    with tempfile.TemporaryDirectory() as folder:
        write_ct2(model, tokenizer, Path(folder) / "ct2", quantization)
        return ctranslate2.Translator(
            str(Path(folder) / "ct2"), device="cuda" if use_cuda else "cpu", inter_threads=1, intra_threads=torch.get_num_threads()
        )


def ct2_fixed_length_decode(translator, src: list[list[str]], out_len: int = 20) -> tuple[list[list[str]], float]:
    """`fixed_length_decode` in CTranslate2: (output pieces per sentence, seconds).

    min_decoding_length = max_decoding_length = out_len keeps </s> out until the last step,
    as tt's fixed length does.
    """
    options = dict(max_batch_size=64, beam_size=1, min_decoding_length=out_len, max_decoding_length=out_len)
    translator.translate_batch(src[:64], **options)  # warm-up: first-call allocations
    started = time.perf_counter()
    results = translator.translate_batch(src, **options)
    return [r.hypotheses[0] for r in results], time.perf_counter() - started


def ct2_fixed_length_speed(
    model, tokenizer, quantization: str, device: torch.device, sentences: int = 1154, src_len: int = 12, out_len: int = 20
) -> float:
    """Output tokens/s of the fixed-length measurement, for the model exported to CTranslate2."""
    src = [[tokenizer.src_piece(i) for i in row] for row in fixed_length_sources(tokenizer.src_vocab_size, sentences, src_len)]
    outputs, elapsed = ct2_fixed_length_decode(ct2_translator(model, tokenizer, quantization, device), src, out_len)
    return sum(map(len, outputs)) / elapsed  # the tokens actually made, counted


def ct2_installed() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True
