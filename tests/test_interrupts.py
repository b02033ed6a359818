"""Real `tt train` processes interrupted by signals, then resumed: nothing lost, nothing changed.

Each interrupted run is resumed to the same step count as an uninterrupted reference run
with the same seed, and the final weights must be bit-identical: data order, dropout's
random numbers, Adam's moments and the schedule all come back from the checkpoint.
One thread everywhere, so that the float sums are done in the same order in every run.
"""

from __future__ import annotations

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
from tt.model.checkpoint import METRICS, PENDING_METRICS, STATE_TENSORS, load_model_folder, read_training_state

# Real subprocesses that train and are signalled: minutes, so they run with `-m slow` (CI runs both).
pytestmark = pytest.mark.slow

STEPS = 300
# --cooldown: the learning rate's fall depends on the share of the run done, which must come back too.
TRAIN_OPTIONS = [*TINY_MODEL_OPTIONS, "--dropout", "0.1", "--threads", "1", "--max-steps", str(STEPS), "--cooldown", "0.5"]


def start_training(corpus: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tt.cli", "train", str(corpus), "--out", str(out), *TRAIN_OPTIONS, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def resume(out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tt.cli", "train", "--resume", "--out", str(out), "--threads", "1"]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def wait_for_checkpoint(process: subprocess.Popen, out: Path, after: float) -> None:
    """Wait until a first checkpoint exists, then `after` seconds more, while the run goes on."""
    deadline = time.monotonic() + 120
    while not (out / STATE_TENSORS).exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.02)
    time.sleep(after)
    assert process.poll() is None, "the run ended before it could be interrupted; raise STEPS"


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tsv(tmp_path_factory.mktemp("corpus") / "corpus.tsv", tiny_pairs())


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The uninterrupted run, with the same checkpoint cadence as the interrupted ones."""
    out = tmp_path_factory.mktemp("reference") / "model"
    process = start_training(corpus, out, "--save-every", "0.05")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return weights(out)


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_says_how_to_resume_and_resume_is_exact(corpus, reference, tmp_path, signum, exit_code):
    out = tmp_path / "model"
    process = start_training(corpus, out, "--save-every", "1h")  # only the signal's checkpoint
    # The very first checkpoint is written by the signal itself: wait for training to start.
    deadline = time.monotonic() + 120
    while not any((out / name).exists() for name in (METRICS, PENDING_METRICS)):  # training has begun
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    time.sleep(0.5)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert f"continue with: tt train --out {out} --resume" in stderr
    state, _ = read_training_state(out)
    assert 0 < state["step"] < STEPS
    finished = resume(out)
    assert finished.returncode == 0, finished.stderr
    assert f"resuming {out} at step {state['step']:,}" in finished.stderr
    assert_same_weights(weights(out), reference)


@pytest.mark.parametrize("after", [0.0, 0.4, 1.1])
def test_kill_9_leaves_a_loadable_checkpoint_and_resume_is_exact(corpus, reference, tmp_path, after):
    """SIGKILL cannot be caught: atomic writes alone must keep the last checkpoint whole.

    With a checkpoint every 0.05 s the kill often lands in the middle of a save.
    """
    out = tmp_path / "model"
    process = start_training(corpus, out, "--save-every", "0.05")
    wait_for_checkpoint(process, out, after)
    process.kill()
    process.communicate(timeout=60)
    state, _ = read_training_state(out)  # whole and readable
    load_model_folder(out)  # and so is the model a translator would load
    assert 0 < state["step"] < STEPS
    finished = resume(out)
    assert finished.returncode == 0, finished.stderr
    assert_same_weights(weights(out), reference)
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # a killed save's leftovers are cleared


def test_kill_9_repeatedly_then_resume_is_exact(corpus, reference, tmp_path):
    """Killed, resumed, killed again, resumed: still the uninterrupted run's weights."""
    out = tmp_path / "model"
    first = start_training(corpus, out, "--save-every", "0.05")
    wait_for_checkpoint(first, out, 0.3)
    first.kill()
    first.communicate(timeout=60)
    step_before = read_training_state(out)[0]["step"]
    command = [sys.executable, "-m", "tt.cli", "train", "--resume", "--out", str(out), "--threads", "1"]
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 120
    while read_training_state(out)[0]["step"] <= step_before:
        assert second.poll() is None and time.monotonic() < deadline, second.communicate()
        time.sleep(0.02)
    second.kill()
    second.communicate(timeout=60)
    finished = resume(out)
    assert finished.returncode == 0, finished.stderr
    assert_same_weights(weights(out), reference)
