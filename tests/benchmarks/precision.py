"""bfloat16 autocast vs float32: the same run twice, compared on dev loss at the same steps.

    python tests/benchmarks/precision.py [--steps 600] [--every 150]

Both runs start from the same seed (same initial weights, same batches, same dropout
masks), train the default model shape on Tatoeba zh→en, and evaluate dev loss in float32.
Prints the two curves, their relative gap and the speed ratio. Needs
../shared/data/tatoeba-cmn-eng/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from tt.cli.presets import preset_configs
from tt.data.batches import BatchStream
from tt.data.clean import CleaningConfig, clean_pairs
from tt.data.corpus import CorpusSpec, read_pairs
from tt.data.tokenizer import train_tokenizer
from tt.model.evaluate import DevSet, evaluate_loss
from tt.model.train import Trainer
from tt.model.run import new_model

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-cmn-eng"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=150)
    args = parser.parse_args()
    if not (DATA / "train.tsv").exists():
        sys.exit(f"no shared data at {DATA}: nothing to measure")
    spec = CorpusSpec(path=str(DATA / "train.tsv"), src_col=2, tgt_col=1)
    train, _ = clean_pairs(read_pairs(spec), CleaningConfig())
    dev, _ = clean_pairs(read_pairs(replace(spec, path=str(DATA / "dev.tsv"))), CleaningConfig())
    configs = preset_configs(None)
    tokenizer, _ = train_tokenizer(train, configs.tokenizer)
    src = [tokenizer.encode_src(s) for s, _ in train]
    tgt = [tokenizer.encode_tgt(t) for _, t in train]
    dev_set = DevSet([tokenizer.encode_src(s) for s, _ in dev], [tokenizer.encode_tgt(t) for _, t in dev])
    curves, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        model = new_model(configs.model, tokenizer, configs.train.seed)  # as tt train builds it: sizes and tying from the tokenizer
        train_config = replace(configs.train, precision=precision, device="cpu")
        stream = BatchStream(src, tgt, train_config.batch_tokens, train_config.seed)
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(model, tokenizer, stream, None, train_config, Path(folder), dict, time.monotonic())
            torch.manual_seed(train_config.seed)
            batches = stream.rows()
            curves[precision], seconds[precision] = [], 0.0
            for step in range(1, args.steps + 1):
                started = time.perf_counter()
                trainer.train_step(next(batches))
                seconds[precision] += time.perf_counter() - started
                if step % args.every == 0:
                    loss = evaluate_loss(model, dev_set, 4096, train_config.label_smoothing)["dev_loss"]
                    curves[precision].append((step, loss))
                    print(f"{precision} step {step:>5} dev loss {loss:.4f}", flush=True)
    print(f"\n{'step':>6} {'fp32':>8} {'bf16':>8} {'gap':>7}")
    for (step, a), (_, b) in zip(curves["fp32"], curves["bf16"]):
        print(f"{step:>6} {a:>8.4f} {b:>8.4f} {(b - a) / a:>+7.2%}")
    print(f"\ntraining time: fp32 {seconds['fp32']:.0f}s, bf16 {seconds['bf16']:.0f}s ({seconds['fp32'] / seconds['bf16']:.2f}× faster)")


if __name__ == "__main__":
    main()
