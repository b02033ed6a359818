"""The residual connection put to the test: the same small runs with and without it, at several depths.

    python tests/benchmarks/residual.py [--layers 3 6 12] [--steps 300] [--out /tmp/residual]

Each run: a Tatoeba zh→en subset (../shared/data/tatoeba-cmn-eng: the first --pairs
training pairs, the first 400 dev pairs), a tiny model (d_model 32), the same seed, data
and number of updates; only --layers and --no-residual change. Prints, per run, the dev
cross-entropy after the last update and the gradient norm (before clipping, mean over the
recorded steps) reaching the first and the last layer of each stack. The run folders stay
in --out: `tt info OUT/residual-6 OUT/no-residual-6` shows their curves overlaid.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-cmn-eng"


def subset(source: Path, target: Path, lines: int) -> Path:
    with source.open(encoding="utf-8-sig") as handle:
        target.write_text("".join(line for _, line in zip(range(lines), handle)), encoding="utf-8")
    return target


def mean_norm(lines: list[dict], part: str) -> float:
    values = [line["grad_norm"][part] for line in lines if part in line.get("grad_norm", {})]
    return sum(values) / max(len(values), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tt-residual"))
    args = parser.parse_args()
    if not (DATA / "train.tsv").exists():
        sys.exit(f"no shared data at {DATA}")
    args.out.mkdir(parents=True, exist_ok=True)
    train = subset(DATA / "train.tsv", args.out / "train.tsv", args.pairs)
    dev = subset(DATA / "dev.tsv", args.out / "dev.tsv", 400)
    print("| layers | residual | dev CE after %d updates | training CE | ‖g‖ encoder first / last layer | ‖g‖ decoder first / last layer | seconds |" % args.steps)
    print("|---|---|---|---|---|---|---|")
    for layers in args.layers:
        for residual in (True, False):
            folder = args.out / f"{'residual' if residual else 'no-residual'}-{layers}"
            command = [
                sys.executable, "-m", "tt.cli", "train", str(train), "--src-col", "2", "--tgt-col", "1", "--dev", str(dev),
                "--out", str(folder), "--overwrite", "--layers", str(layers), "--d-model", "32", "--heads", "2", "--ff", "64",
                "--vocab-size", "2000", "--joint-vocab", "--batch-tokens", "512", "--warmup", "50", "--lr", "2e-3", "--dropout", "0.1",
                "--max-steps", str(args.steps), "--dev-every", str(args.steps), "--dev-bleu-sentences", "0",
                "--log-every", "10", "--seed", "1", "--threads", "1", "--precision", "fp32", "--residual" if residual else "--no-residual",
            ]
            started = time.monotonic()
            subprocess.run(command, check=True, capture_output=True)
            seconds = time.monotonic() - started
            lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            dev_ce = [line["dev_loss"] for line in lines if "dev_loss" in line][-1]
            train_ce = [line["nll"] for line in lines if "nll" in line][-1]
            enc = f"{mean_norm(lines, 'encoder.0'):.2e} / {mean_norm(lines, f'encoder.{layers - 1}'):.2e}"
            dec = f"{mean_norm(lines, 'decoder.0'):.2e} / {mean_norm(lines, f'decoder.{layers - 1}'):.2e}"
            print(f"| {layers} | {'yes' if residual else 'no'} | {dev_ce:.3f} | {train_ce:.3f} | {enc} | {dec} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
