"""Data-parallel training under torchrun (gloo on CPU) against one process with --accum.

Two processes each train on one share of every batch and DistributedDataParallel averages
their gradients; one process with --accum 2 trains on the same two shares one after the
other and adds the gradients up. The shares are cut the same way in both cases, so the
arithmetic is the same: each process's loss is scaled by 2 (exact in binary floating
point) before DDP divides the sum by 2, and a sum of two terms does not depend on their
order. With one thread per process (so that no matrix product splits its sums
differently) the two runs should agree to the last bit; the tolerance of 1e-6 below only
leaves room for a BLAS or gloo build that orders its float additions differently, and is
far below the 2e-3 by which two runs with different thread counts were seen to drift apart
after 12 Adam steps (Adam turns float noise in near-zero gradients into whole-lr updates).
Dropout is off: each process draws its own dropout masks, which one process cannot copy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_MODEL_OPTIONS, tiny_pairs, write_tsv
from tt.model.checkpoint import METRICS, PENDING_METRICS, read_training_state

# Real subprocesses that train and are signalled: minutes, so they run with `-m slow` (CI runs both).
pytestmark = pytest.mark.slow

OPTIONS = [
    *TINY_MODEL_OPTIONS, "--dropout", "0", "--precision", "fp32", "--threads", "1", "--save-every", "1h",
    "--device", "cpu",
    # No cool-down here: the resume tests stop at 6 steps and go on to 12, and a cool-down
    # follows each run's own limit. test_cooldown_is_the_same_in_every_process has one.
    "--cooldown", "0",
]
TOLERANCE = 1e-6


def tt_train(args: list[str], processes: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "tt.cli", "train", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a hang: take the workers down too, not only the launcher
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"tt train hung for {timeout} s: {stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def loss_curve(out: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: m["loss"] for m in lines if "loss" in m}


def assert_same_run(a: Path, b: Path) -> None:
    curve_a, curve_b = loss_curve(a), loss_curve(b)
    assert curve_a.keys() == curve_b.keys() and len(curve_a) >= 6
    for step in curve_a:
        assert curve_a[step] == pytest.approx(curve_b[step], rel=TOLERANCE), step
    weights_a, weights_b = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.allclose(weights_a[name], weights_b[name], rtol=0, atol=TOLERANCE), name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tsv(tmp_path_factory.mktemp("corpus") / "corpus.tsv", tiny_pairs())


@pytest.fixture(scope="module")
def two_processes(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "model"
    result = tt_train([str(corpus), "--out", str(out), "--max-steps", "12", *OPTIONS, "--log-every", "1"], processes=2)
    assert "2 processes × cpu" in result.stderr
    # rank 0 alone speaks: one summary table, one closing line
    assert result.stderr.count("corpus and tokenizer") == 1 and result.stderr.count("done:") == 1
    return out


def test_two_processes_match_one_process_accumulating_two_pieces(corpus, two_processes, tmp_path):
    one = tmp_path / "one"
    result = tt_train([str(corpus), "--out", str(one), "--max-steps", "12", *OPTIONS, "--log-every", "1", "--accum", "2"])
    assert "accumulated over 2 pieces" in result.stderr
    assert_same_run(two_processes, one)
    # one process wrote every file; the others none (no stray temporary or lock files of theirs)
    assert sorted(p.name for p in two_processes.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in one.iterdir() if not p.name.startswith(".")
    )


def test_cooldown_is_the_same_in_every_process(corpus, tmp_path):
    """The learning rate's cool-down follows the share of the run all processes agreed on."""
    two, one = tmp_path / "two", tmp_path / "one"
    cooldown = [str(corpus), "--max-steps", "12", *OPTIONS, "--log-every", "1", "--cooldown", "0.5"]
    tt_train([*cooldown, "--out", str(two)], processes=2)
    tt_train([*cooldown, "--out", str(one), "--accum", "2"])
    assert_same_run(two, one)
    rates = [json.loads(line)["lr"] for line in (two / "metrics.jsonl").read_text().splitlines() if '"lr"' in line]
    assert len(rates) == 12 and rates[-1] < rates[5] / 4  # it did fall: to 1/6 of the plain schedule at step 12


def test_resume_with_one_process_continues_a_two_process_run(corpus, two_processes, tmp_path):
    out = tmp_path / "model"
    tt_train([str(corpus), "--out", str(out), "--max-steps", "6", *OPTIONS, "--log-every", "1"], processes=2)
    assert read_training_state(out)[0]["processes"] == 2
    result = tt_train(["--resume", "--out", str(out), "--max-steps", "12", "--accum", "2", "--threads", "1"])
    assert "processes: 2 before, 1 now" in result.stderr
    assert_same_run(two_processes, out)


def test_resume_with_two_processes_continues_a_one_process_run(corpus, two_processes, tmp_path):
    out = tmp_path / "model"
    tt_train([str(corpus), "--out", str(out), "--max-steps", "6", *OPTIONS, "--log-every", "1", "--accum", "2"])
    result = tt_train(["--resume", "--out", str(out), "--max-steps", "12", "--accum", "1", "--threads", "1"], processes=2)
    assert "processes: 1 before, 2 now" in result.stderr
    assert_same_run(two_processes, out)


def test_ctrl_c_stops_every_process_after_the_same_step_and_saves(corpus, tmp_path):
    """A terminal's Ctrl-C reaches torchrun and each worker (and torchrun forwards it again)."""
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "tt.cli", "train", str(corpus), "--out", str(out), *OPTIONS, "--max-steps", "1000000",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any((out / name).exists() for name in (METRICS, PENDING_METRICS)):  # training has begun
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)  # the whole process group, as a terminal does
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # a failure above: take the workers down too
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert f"continue with: torchrun … -m tt.cli train --out {out} --resume (or tt train --out {out} --resume, on one process)" in stderr
    step = read_training_state(out)[0]["step"]
    assert step > 0
    resumed = tt_train(["--resume", "--out", str(out), "--max-steps", str(step + 3), "--accum", "2", "--threads", "1"])
    assert f"resuming {out} at step {step:,}" in resumed.stderr
    assert read_training_state(out)[0]["step"] == step + 3


def test_patience_known_to_rank_0_alone_stops_every_process_at_the_same_step(corpus, tmp_path):
    """Dev BLEU, and so patience, is measured by rank 0 only: the stop must still be agreed.

    (Before the decision was shared, rank 0 went to its final save while rank 1 went on to
    the next step's gradient sum, and the two waited for each other forever.)
    """
    out = tmp_path / "model"
    result = tt_train(
        [str(corpus), "--out", str(out), *OPTIONS, "--max-steps", "60", "--dev-size", "8",
         "--dev-every", "2", "--patience", "1", "--dev-bleu-sentences", "8"],
        processes=2, timeout=150,
    )
    assert "stopped early: no better dev BLEU in 1 evaluations" in result.stderr
    step = read_training_state(out)[0]["step"]
    assert step < 60 and step % 2 == 0
