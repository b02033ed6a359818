"""Quality at a fixed budget: train on Tatoeba zh→en for a wall-clock budget, then score dev.

    python tests/benchmarks/quality.py [--minutes 15] [--out runs/q] [--en-zh] [--train FILE] [-- extra tt train options]

--en-zh trains the other direction, English → Chinese, which tt's defaults were never tuned
on (BLEU then uses sacrebleu's zh tokenization, as `tt eval` picks it for Chinese references).
--train trains on another file with the same columns (a subset, say, to see how a smaller
corpus fares); the dev split stays the same.

Trains with the defaults a user gets from `tt train corpus.tsv --max-time 15m` (plus any
extra options after `--`), then runs `tt eval` on the dev split, greedy and beam 5, and
prints the figures and the dev BLEU curve recorded in metrics.jsonl. Reads the shared data
from ../shared/data/tatoeba-cmn-eng/ and exits with a message where it is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-cmn-eng"
TT = [sys.executable, "-m", "tt.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--en-zh", action="store_true", help="English → Chinese instead of Chinese → English")
    parser.add_argument("--train", type=Path, default=DATA / "train.tsv", help="the training file (default: the train split)")
    parser.add_argument("extra", nargs="*", help="more `tt train` options, after --")
    args = parser.parse_args()
    if not (DATA / "train.tsv").exists():
        sys.exit(f"no shared data at {DATA}: nothing to measure")
    columns = ["--src-col", "1", "--tgt-col", "2"] if args.en_zh else ["--src-col", "2", "--tgt-col", "1"]
    train = [
        *TT, "train", str(args.train), *columns, "--dev", str(DATA / "dev.tsv"),
        "--out", str(args.out), "--overwrite", "--max-time", f"{args.minutes * 60:.0f}s", *args.extra,
    ]
    print("$", " ".join(train[2:]), flush=True)
    if subprocess.run(train).returncode != 0:
        sys.exit("tt train failed (its error is above): nothing to score")
    figures = {}
    for beam in (1, 5):
        done = subprocess.run(
            [*TT, "eval", str(DATA / "dev.tsv"), *columns, "--model", str(args.out), "--beam", str(beam), "--json"],
            check=True, capture_output=True, text=True,
        )
        figures[beam] = json.loads(done.stdout)
    print(f"\ndev BLEU greedy {figures[1]['bleu']:.2f} (chrF {figures[1]['chrf']:.1f}), beam 5 {figures[5]['bleu']:.2f} (chrF {figures[5]['chrf']:.1f})")
    print(f"signature: {figures[1]['signature']['bleu']}")
    print("\ncurve (dev BLEU on the first dev sentences, greedy, during training):")
    print(f"{'step':>6} {'minutes':>8} {'dev loss':>9} {'dev BLEU':>9}")
    for line in (args.out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "dev_loss" in record:
            bleu = record.get("dev_bleu")
            print(f"{record['step']:>6} {record['elapsed_s'] / 60:>8.1f} {record['dev_loss']:>9.3f} {bleu if bleu is None else round(bleu, 2):>9}")


if __name__ == "__main__":
    main()
