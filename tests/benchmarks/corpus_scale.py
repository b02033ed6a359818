"""Corpora of any size: memory and time of `tt train --max-steps 30` as the corpus grows.

    python tests/benchmarks/corpus_scale.py [--pairs 100000 1000000 10000000] [--keep DIR]
    python tests/benchmarks/corpus_scale.py --first-pass [--pairs 1000000]

For each size, writes a corpus of that many Tatoeba zh-en pairs (sentences reused with a
running eight-digit number appended to both sides, so nothing is a duplicate) into a temporary folder,
then measures with the defaults a user gets:
- `tt train CORPUS --max-steps 30` on a fresh folder: peak RSS, both the largest process's
  own maximum resident set (getrusage of the children) and all of the run's processes added
  up (sampled every 0.1 s; pages shared between processes count in each, so an upper bound:
  a large corpus is prepared in a process of its own, with workers),
  and wall time to the end of step 30;
- the same again with --overwrite, where the prepared data is reused: seconds until the
  training loop starts (the "training … parameters" line) and peak RSS;
- preparation in pairs per second (cleaning, tokenizer training and tokenizing): the pairs
  over how much later the first run's training started than the second's.
Prints one table row per size. Reads ../shared/data/tatoeba-cmn-eng/ and exits with a
message where it is absent. A figure, not a test: nothing is asserted.

With --first-pass, measures only preparation's first pass (read, clean, de-duplicate, write
the kept pairs, offer them to the dev picker and the tokenizer sample, as `tt prepare` does)
in a fresh process, on one core and on all of them (`tt.data.parallel_clean`), start-up
of the worker processes included: one row per size and number of workers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-cmn-eng"
TT = [sys.executable, "-m", "tt.cli"]

# Runs a command and prints its peak RSS (KiB on Linux) and, for each stderr line, when it came.
# Two peaks: the largest process's own (getrusage of the children: tt train, and those of its
# helpers that it waited for), and the whole process tree's RSS added up, sampled every 0.1 s
# (tt train, the process preparing a large corpus, their worker processes).
RUN = r"""
import json, os, resource, subprocess, sys, threading, time

def tree(pid):
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                for child in handle.read().split():
                    pids += tree(int(child))
    except OSError:
        pass
    return pids

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next((int(line.split()[1]) for line in handle if line.startswith("VmRSS")), 0)
    except OSError:
        return 0

start = time.monotonic()
process = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
tree_peak = [0]

def sample():
    while process.poll() is None:
        tree_peak[0] = max(tree_peak[0], sum(rss_kib(pid) for pid in tree(process.pid)))
        time.sleep(0.1)

sampler = threading.Thread(target=sample)
sampler.start()
lines = [(round(time.monotonic() - start, 2), line.rstrip()) for line in process.stderr]
code = process.wait()
sampler.join()
print(json.dumps({"code": code, "seconds": time.monotonic() - start, "lines": lines, "tree_peak_kib": tree_peak[0],
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measure(command: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, *command], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["code"] != 0:
        sys.exit("failed: " + " ".join(command) + "\n" + "\n".join(line for _, line in result["lines"][-5:]))
    return result


def write_corpus(path: Path, pairs: int) -> None:
    source = [line.split("\t")[:2] for line in (DATA / "train.tsv").read_text(encoding="utf-8-sig").splitlines()]
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(pairs):
            en, zh = source[i % len(source)]
            # Eight digits whatever the size: with split digits each is a token, and numbers
            # that grew with the corpus made the large corpora's sentences longer (and their
            # batches' attention larger), which is not what this benchmark measures.
            handle.write(f"{zh} {i:08d}\t{en} {i:08d}\n")


# Preparation's first pass alone, as data/prepare.py runs it; prints {"seconds", "read", "kept"}.
FIRST_PASS = r"""
import json, os, sys, tempfile, time
from tt.data import parallel_clean
from tt.data.clean import CleaningConfig, CleaningReport, DevPicker
from tt.data.corpus import CorpusSpec
from tt.data.prepare import Reservoir
corpus, workers = sys.argv[1], int(sys.argv[2])
parallel_clean.PARALLEL_MIN_BYTES = 0  # the figure for these workers, whatever the corpus size
start = time.monotonic()
report, picker, sample = CleaningReport(), DevPicker(1000, 1), Reservoir(300_000, 1)
with tempfile.TemporaryFile("w", encoding="utf-8") as handle:
    for kept in parallel_clean.clean_corpus(CorpusSpec(path=corpus), CleaningConfig(), report, [], picker.key, workers):
        handle.write("".join(f"{src}\t{tgt}\n" for src, tgt, _ in kept))
        picker.offer_many(kept)
        sample.offer_many(kept)
print(json.dumps({"seconds": time.monotonic() - start, "read": report.read, "kept": report.kept}))
"""


def first_pass(work: Path, sizes: list[int]) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print("| pairs | workers | first pass (pairs/s) | seconds |")
    print("|---|---|---|---|")
    for pairs in sizes:
        corpus = work / f"corpus-{pairs}.tsv"
        if not corpus.exists():
            write_corpus(corpus, pairs)
        for workers in sorted({1, cores}):
            done = subprocess.run([sys.executable, "-c", FIRST_PASS, str(corpus), str(workers)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(done.stderr)
            result = json.loads(done.stdout)
            print(f"| {pairs:,} | {workers} | {result['read'] / result['seconds']:,.0f} | {result['seconds']:.1f} |", flush=True)


def gb(kib: int) -> str:
    return f"{kib / 2**20:.2f}"


def started_at(result: dict) -> float:
    return next(t for t, line in result["lines"] if line.startswith("training ") and "parameters" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--keep", type=Path, help="work in this folder instead of a temporary one")
    parser.add_argument("--first-pass", action="store_true", help="time the cleaning pass alone, 1 worker vs all cores")
    args = parser.parse_args()
    if not (DATA / "train.tsv").exists():
        sys.exit(f"no shared data at {DATA}: nothing to measure")
    if args.first_pass:
        with tempfile.TemporaryDirectory() as temporary:
            work = args.keep or Path(temporary)
            work.mkdir(parents=True, exist_ok=True)
            first_pass(work, args.pairs)
        return
    print("| pairs | prepare (pairs/s) | peak RSS, first run (largest process / all at once) | wall to step 30 "
          "| start on prepared data | peak RSS, prepared (largest / all) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as temporary:
        work = args.keep or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        for pairs in args.pairs:
            corpus = work / f"corpus-{pairs}.tsv"
            if not corpus.exists():
                write_corpus(corpus, pairs)
            run = work / f"run-{pairs}"
            shutil.rmtree(run, ignore_errors=True)  # measure a fresh preparation
            first = measure([*TT, "train", str(corpus), "--out", str(run), "--max-steps", "30", "--overwrite"])
            again = measure([*TT, "train", str(corpus), "--out", str(run), "--max-steps", "30", "--overwrite"])
            # Preparation's time: how much later the first run's training started than the
            # second's, which reused the prepared data (start-up and model set-up cancel out).
            rate = pairs / max(started_at(first) - started_at(again), 1e-9)
            print(
                f"| {pairs:,} | {rate:,.0f} | {gb(first['peak_kib'])} / {gb(first['tree_peak_kib'])} GB | {first['seconds']:.0f} s "
                f"| {started_at(again):.1f} s | {gb(again['peak_kib'])} / {gb(again['tree_peak_kib'])} GB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
