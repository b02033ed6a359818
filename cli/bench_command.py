"""`tt bench`: how fast this machine is, and how fast tt is on it, side by side in one run.

Everything is measured in this one process (or its children, for memory and start-up), so
the figures can be read as ratios even on a shared, noisy machine (the measurements
themselves are in `tt.model.speed`):
- the yardstick: a square matmul in float32 and bfloat16 (1024³ on the CPU, 8192³ on a GPU);
- training: non-padding target tokens per second, and model-FLOPs utilisation;
- decoding: greedy and beam-5 at batch 1 and 64, a fixed-length measurement (and the same
  for the model exported to CTranslate2, float32 and int8, when ctranslate2 is installed),
  cache vs none;
- peak memory (RSS) of `tt train` and `tt translate`, and start-up wall times.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from tt.data.clean import CleaningConfig, clean_pairs
from tt.data.corpus import CorpusSpec, read_pairs
from tt.data.errors import UserError
from tt.data.tokenizer import TokenizerConfig, train_tokenizer
from tt.model.device import bf16_supported, resolve_device
from tt.model.speed import (
    ct2_fixed_length_speed, ct2_installed, decode_speed, fixed_length_speed, flops_per_target_token, matmul_peak, matmul_size,
    train_speed,
)
from tt.model.transformer import ModelConfig, Transformer

REFERENCE_SHAPE = ModelConfig(d_model=256, n_heads=4, d_ff=1024, n_layers=3)  # JoeyNMT's, for comparison
REFERENCE_VOCAB = 8000
REFERENCE_BATCH_TOKENS = 4096


def corpus_for_bench(data_dir: Path | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """Tatoeba Chinese→English when present; otherwise a synthetic corpus of made-up words."""
    if data_dir is not None and (data_dir / "train.tsv").exists():
        spec = CorpusSpec(path=str(data_dir / "train.tsv"), src_col=2, tgt_col=1)
        train, _ = clean_pairs(read_pairs(spec), CleaningConfig())
        dev, _ = clean_pairs(read_pairs(replace(spec, path=str(data_dir / "dev.tsv"))), CleaningConfig())
        return train, dev, f"{data_dir} (Chinese → English)"
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(3000)]
    chars = [chr(0x4E00 + i) for i in range(2500)]

    def pair():
        n = rng.randint(3, 14)
        return "".join(rng.choice(chars) for _ in range(n)), " ".join(rng.choice(words) for _ in range(n))

    return [pair() for _ in range(20000)], [pair() for _ in range(1000)], "synthetic (no shared data found)"


# Run `tt` inside a child that reports its own peak resident memory (VmHWM) as it exits.
# The child's ru_maxrss would not do: Linux carries the parent's size across fork + exec.
_CHILD = """
import atexit, runpy, sys
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            sys.stderr.write("TT_PEAK_RSS_KB " + line.split()[1] + "\\n")
atexit.register(report)
sys.argv = ["tt", *sys.argv[1:]]
runpy.run_module("tt.cli", run_name="__main__")
"""


def child_peak_rss_mb(arguments: list[str], cwd: str) -> tuple[float | None, float]:
    """(peak resident memory in MB, or None where /proc is missing; wall seconds) of one `tt` run."""
    started = time.perf_counter()
    done = _run_child([sys.executable, "-c", _CHILD, *arguments], arguments, cwd)
    seconds = time.perf_counter() - started
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("TT_PEAK_RSS_KB")]
    return (int(peaks[-1]) / 1024 if peaks else None), seconds


def _wall(arguments: list[str], cwd: str, stdin: str | None = None) -> float:
    """Wall time of the installed `tt` command itself, the way a user starts it."""
    started = time.perf_counter()
    _run_child([*tt_command(), *arguments], arguments, cwd, stdin)
    return time.perf_counter() - started


def tt_command() -> list[str]:
    """The `tt` script beside this Python, else the one on PATH, else `python -m tt.cli` (an
    install without scripts, such as `pip install --target`)."""
    beside = Path(sys.executable).parent / "tt"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("tt")
    return [found] if found else [sys.executable, "-m", "tt.cli"]


def _run_child(command: list[str], arguments: list[str], cwd: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run one `tt` child; one that fails is a UserError with the last line it wrote (its error:)."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, input=stdin)
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("TT_PEAK_RSS_KB")]
        last = said[-1].strip() if said else "no message"
        raise UserError(f"tt bench: `tt {' '.join(arguments)}` exited with {done.returncode}: {last}")
    return done


def run_bench(data_dir: Path | None, seconds: float, report: Callable[[str], None], device_name: str = "cpu") -> dict:
    device = resolve_device(device_name)
    supported = bf16_supported(device)
    results: dict = {"threads": torch.get_num_threads(), "bf16_supported": supported, "device": _describe(device)}
    default_precision = "bf16" if supported else "fp32"
    report("matmul peak")
    results["matmul_size"] = matmul_size(device)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        gflops, shape = matmul_peak(dtype, REFERENCE_SHAPE, REFERENCE_BATCH_TOKENS, device)
        results[f"matmul_{precision}_gflops"], results[f"matmul_{precision}_shape"] = gflops, shape

    train_pairs, dev_pairs, source = corpus_for_bench(data_dir)
    results["data"] = source
    report("tokenizer (8k joint)")
    tokenizer, _ = train_tokenizer(train_pairs, TokenizerConfig(vocab_size=REFERENCE_VOCAB, joint=True))
    src_ids = [tokenizer.encode_src(s) for s, _ in train_pairs]
    tgt_ids = [tokenizer.encode_tgt(t) for _, t in train_pairs]
    src_per_tgt = sum(map(len, src_ids)) / sum(map(len, tgt_ids))
    shapes = {
        "reference": (replace(REFERENCE_SHAPE, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size), REFERENCE_BATCH_TOKENS),
    }
    from tt.cli.presets import default_preset, preset_configs

    results["default_preset"] = default_preset(device_name)
    default = preset_configs(results["default_preset"])
    report(f"tokenizer ({default.tokenizer.vocab_size:,}, the default)")
    default_tokenizer, _ = train_tokenizer(train_pairs, default.tokenizer)
    default_ids = (
        [default_tokenizer.encode_src(s) for s, _ in train_pairs],
        [default_tokenizer.encode_tgt(t) for _, t in train_pairs],
    )
    shapes["default"] = (
        replace(default.model, src_vocab_size=default_tokenizer.src_vocab_size, tgt_vocab_size=default_tokenizer.tgt_vocab_size),
        default.train.batch_tokens,
    )
    peak = {"fp32": results["matmul_fp32_gflops"], "bf16": results["matmul_bf16_gflops"]}
    data = {"reference": (src_ids, tgt_ids), "default": default_ids}
    for name, (config, batch_tokens) in shapes.items():
        flops = flops_per_target_token(config, src_per_tgt)
        results[f"{name}_flops_per_token"] = flops
        for precision in ("fp32", "bf16") if supported else ("fp32",):
            report(f"training, {name} shape, {precision}")
            speed = train_speed(config, *data[name], batch_tokens, precision, seconds, device_name)
            key = f"train_{name}_{precision}"
            results[f"{key}_tok_s"] = speed["tok_s"]
            results[f"{key}_mfu"] = speed["tok_s"] * flops / (peak[precision] * 1e9)
            for other in peak:  # training's share of each peak: how much of the bf16 units it uses
                results[f"{key}_share_of_{other}_peak"] = speed["tok_s"] * flops / (peak[other] * 1e9)
            results[f"{key}_padding"] = speed["padding"]
    results["train_tok_s"] = results[f"train_reference_{default_precision}_tok_s"]

    torch.manual_seed(0)
    model = Transformer(shapes["reference"][0]).eval().to(device)
    dev_src = [tokenizer.encode_src(s) for s, _ in dev_pairs]
    for beam in (1, 5):
        for batch in (1, 64):
            report(f"decoding, beam {beam}, batch {batch}")
            speed = decode_speed(model, dev_src, batch, beam)
            results[f"decode_beam{beam}_batch{batch}_sentences_s"] = speed["sentences_s"]
            results[f"decode_beam{beam}_batch{batch}_tok_s"] = speed["tok_s"]
    report("decoding, fixed length")
    results["decode_fixed_tok_s"] = fixed_length_speed(model, tokenizer.tgt_vocab_size)
    if ct2_installed():  # the optional extra: tt-translator[ct2]
        for quantization in ("float32", "int8"):
            report(f"decoding, fixed length, CTranslate2 {quantization}")
            results[f"decode_fixed_ct2_{quantization}_tok_s"] = ct2_fixed_length_speed(model, tokenizer, quantization, device)
    report("decoding, cache vs recompute (30 tokens)")
    cached = fixed_length_speed(model, tokenizer.tgt_vocab_size, sentences=128, out_len=30)
    recomputed = fixed_length_speed(model, tokenizer.tgt_vocab_size, sentences=128, out_len=30, use_cache=False)
    results["decode_cache_speedup"] = cached / recomputed

    model.cpu()  # the processes below measure the CPU command's memory and start-up
    report("memory and start-up")
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.tsv"
        corpus.write_text("".join(f"{s}\t{t}\n" for s, t in train_pairs[:3000]), encoding="utf-8")
        results["train_peak_rss_mb"], _ = child_peak_rss_mb(["train", str(corpus), "--out", "m", "--max-steps", "30"], folder)
        results["translate_peak_rss_mb"], results["startup_translate_s"] = child_peak_rss_mb(["translate", "--model", "m", train_pairs[0][0]], folder)
        results["startup_help_s"] = _wall(["--help"], folder)
        # The same sentence on stdin takes the PyTorch path (an argument takes the NumPy quick path)
        results["startup_translate_torch_s"] = _wall(["translate", "--model", "m"], folder, stdin=train_pairs[0][0] + "\n")
    return results


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def bench_table(results: dict):
    from rich.table import Table

    where = f"{results['threads']} threads" if results.get("device", "cpu") == "cpu" else results["device"]
    table = Table(title=f"tt bench — {where}, data: {results['data']}", title_justify="left")
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_column("note")

    def row(label, value, note=""):
        table.add_row(label, value, note)

    size = results.get("matmul_size", 1024)  # (older --json results have no size: they measured 1024³)
    for precision, name in (("fp32", "float32"), ("bf16", "bfloat16")):
        shape = results.get(f"matmul_{precision}_shape", f"{size}×{size}×{size}")
        ratio = "" if precision == "fp32" else f"; {results['matmul_bf16_gflops'] / results['matmul_fp32_gflops']:.1f}× float32"
        row(
            f"matmul peak {name}", f"{results[f'matmul_{precision}_gflops']:,.0f} GFLOP/s",
            f"best of {size}³ and the model's linear shapes, here at {shape}{ratio}",
        )
    for name in ("reference", "default"):
        flops = results[f"{name}_flops_per_token"]
        for precision in ("fp32", "bf16"):
            key = f"train_{name}_{precision}"
            if f"{key}_tok_s" in results:
                label = f"default shape ({results['default_preset']})" if name == "default" and "default_preset" in results else f"{name} shape"
                row(
                    f"train {label}, {precision}",
                    f"{results[f'{key}_tok_s']:,.0f} tok/s",
                    f"MFU {results[f'{key}_mfu']:.1%} at {flops / 1e6:.1f} MFLOP/token"
                    + "".join(
                        f"; {results[share]:.0%} of the {other} peak"
                        for other in ("fp32", "bf16")
                        if other != precision and results.get("bf16_supported", True) and (share := f"{key}_share_of_{other}_peak") in results
                    )
                    + f"; padding {results[f'{key}_padding']:.0%}",
                )
    for beam in (1, 5):
        for batch in (1, 64):
            key = f"decode_beam{beam}_batch{batch}"
            row(f"{'greedy' if beam == 1 else 'beam 5'}, batch {batch}", f"{results[key + '_sentences_s']:,.1f} sent/s", f"{results[key + '_tok_s']:,.0f} output tok/s")
    row("fixed length (1,154 × 20 tokens, batch 64)", f"{results['decode_fixed_tok_s']:,.0f} tok/s", "greedy, reference shape")
    for quantization in ("float32", "int8"):
        key = f"decode_fixed_ct2_{quantization}_tok_s"
        if key in results:
            row(
                f"fixed length, CTranslate2 {quantization}",
                f"{results[key]:,.0f} tok/s",
                f"{results[key] / results['decode_fixed_tok_s']:.1f}× tt's; the same model exported (tt export --format ct2)",
            )
    row("key/value cache vs full recompute", f"{results['decode_cache_speedup']:.1f}×", "30-token outputs; recompute = the whole forward pass over the prefix each step")
    def megabytes(value):
        return "n/a (no /proc)" if value is None else f"{value:,.0f} MB"

    row("peak memory, tt train", megabytes(results["train_peak_rss_mb"]), "3,000 pairs, default shape, 30 steps")
    row("peak memory, tt translate", megabytes(results["translate_peak_rss_mb"]), "one sentence")
    row("start-up, tt --help", f"{results['startup_help_s']:.2f} s")
    row("start-up, one-sentence translate", f"{results['startup_translate_s']:.2f} s", "an argument: the quick path, without torch")
    if "startup_translate_torch_s" in results:  # (older --json results lack it)
        row("start-up, the same through PyTorch", f"{results['startup_translate_torch_s']:.2f} s", "the sentence on stdin: the full path")
    return table
