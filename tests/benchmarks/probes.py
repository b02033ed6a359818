"""What recording costs: probe sentences and gradient flow, against the training steps they sit between.

    python tests/benchmarks/probes.py [--steps 100] [--threads 1]

The built-in demo (its corpus, tokenizer, model and batch size, the default probe
你好世界! → Hello World!): times plain training steps, steps that also measure the gradient
flow (one in `log_every` does), and one probe record (forced pass + greedy decoding). Prints
the cost per metrics line as a share of the `log_every` steps between two lines (50 by
default). Figures depend on the machine and its load: run it alone for numbers to quote.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import torch

from tt.cli.presets import demo_configs
from tt.data.batches import BatchStream
from tt.data.clean import clean_pairs
from tt.data.corpus import CorpusSpec, read_pairs
from tt.data.tokenizer import train_tokenizer
from tt.model.probes import DEMO_PROBE, GradientFlow, Probe, ProbeSet
from tt.model.train import Trainer
from tt.model.transformer import Transformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = demo_configs()
    pairs, _ = clean_pairs(read_pairs(CorpusSpec(path=str(files("tt.data") / "demo.tsv"))), configs.cleaning)
    tokenizer, _ = train_tokenizer(pairs, configs.tokenizer, configs.train.seed)
    src = [tokenizer.encode_src(s) for s, _ in pairs]
    tgt = [tokenizer.encode_tgt(t) for _, t in pairs]
    model_config = replace(configs.model, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size)
    torch.manual_seed(configs.train.seed)
    model = Transformer(model_config)
    stream = BatchStream(src, tgt, configs.train.batch_tokens, configs.train.seed)
    probes = ProbeSet([Probe(*DEMO_PROBE)], tokenizer, model_config.max_positions)
    train_config = replace(configs.train, precision="fp32", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(model, tokenizer, stream, None, train_config, Path(folder), dict, time.monotonic(), probes=probes)
        batches = stream.rows()
        plain, measured, recorded = [], [], []
        for step in range(args.steps):
            rows = next(batches)
            flow = GradientFlow(model) if step % 2 else None  # alternate: the same load for both kinds
            started = time.perf_counter()
            trainer.train_step(rows, flow)
            (measured if flow else plain).append(time.perf_counter() - started)
            if step % 10 == 0:
                started = time.perf_counter()
                probes.record(model, trainer.step)
                recorded.append(time.perf_counter() - started)
    step_s = statistics.median(plain)
    flow_s = statistics.median(measured) - step_s
    probe_s = statistics.median(recorded)
    interval = configs.train.log_every * step_s
    print(f"demo model, {torch.get_num_threads()} threads, fp32, median of {len(plain)} steps / {len(recorded)} probe records")
    print(f"training step                {step_s * 1000:8.1f} ms")
    print(f"gradient flow, extra         {flow_s * 1000:8.1f} ms  ({flow_s / interval:.2%} of the {configs.train.log_every} steps of a metrics line)")
    print(f"one probe record             {probe_s * 1000:8.1f} ms  ({probe_s / interval:.2%} of the {configs.train.log_every} steps of a metrics line)")
    print(f"both, per metrics line       {(flow_s + probe_s) / interval:8.2%} of training time")


if __name__ == "__main__":
    main()
