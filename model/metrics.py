"""What training reports: each update's sums, windows of updates → metrics.jsonl lines.

A line of metrics.jsonl is the mean over the real target tokens of a window of updates:
`loss` H(q, p) = `kl` KL(q‖p) + `entropy_floor` H(q), beside `nll`, the plain cross-entropy
−ln p(reference) that perplexity is made of; with the gradient flow of the window's last
update (`tt.model.probes`). Dev evaluations and probe sentences have lines of their own. A
`Reporter` (the CLI's progress bar) gets the same numbers as they are made.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tt.data.atomic import write_atomic
from tt.data.errors import UserError


class Reporter(Protocol):
    def step(self, trainer, parts: "StepTotals") -> None: ...  # trainer: tt.model.train.Trainer
    def log(self, metrics: dict) -> None: ...


class Silent:
    """The reporter of processes other than rank 0."""

    def step(self, trainer, parts) -> None:
        pass

    def log(self, metrics: dict) -> None:
        pass


@dataclass
class StepTotals:
    """One update's sums over the whole batch's real target tokens (all processes), in nats."""

    kl: float = 0.0  # Σ KL(q‖p): the loss
    cross_entropy: float = 0.0  # Σ H(q, p) = KL + H(q)
    entropy: float = 0.0  # Σ H(q)
    nll: float = 0.0  # Σ −ln p(reference token)
    n_tokens: int = 0

    def add(self, parts, weight: float = 1.0) -> None:
        self.kl += weight * float(parts.kl.detach())
        self.cross_entropy += weight * float(parts.cross_entropy.detach())
        self.entropy += weight * float(parts.entropy)
        self.nll += weight * float(parts.nll.detach())
        self.n_tokens += int(weight * parts.n_tokens)

    def values(self) -> list[float]:
        return [self.kl, self.cross_entropy, self.entropy, self.nll, float(self.n_tokens)]

    @classmethod
    def from_values(cls, values: list[float]) -> "StepTotals":
        kl, cross_entropy, entropy, nll, n_tokens = values
        return cls(kl, cross_entropy, entropy, nll, round(n_tokens))


class MetricsWindow:
    """Running sums between two metrics lines."""

    def __init__(self):
        self.started = time.monotonic()
        self.steps = self.tokens = 0
        self.kl = self.cross_entropy = self.entropy = self.nll = self.seconds = 0.0

    def add(self, totals: StepTotals, seconds: float) -> None:
        self.steps += 1
        self.tokens += totals.n_tokens
        self.kl += totals.kl
        self.cross_entropy += totals.cross_entropy
        self.entropy += totals.entropy
        self.nll += totals.nll
        self.seconds += seconds

    def age(self) -> float:
        return time.monotonic() - self.started

    def metrics(self, trainer, lr: float) -> dict:
        n = max(self.tokens, 1)
        return {
            "step": trainer.step,
            "epoch": round(trainer.stream.epochs_done, 4),
            "loss": self.cross_entropy / n,  # H(q, p) per token = KL(q‖p) + H(q)
            "kl": self.kl / n,
            "entropy_floor": self.entropy / n,  # H(q): what label smoothing adds
            "nll": self.nll / n,  # −ln p(reference token): plain cross-entropy
            "ppl": math.exp(min(self.nll / n, 50)),
            "lr": lr,
            "tokens": trainer.tokens,
            "elapsed_s": round(trainer.elapsed(), 2),
            "tokens_per_s": self.tokens / max(self.seconds, 1e-9),
        }


class MetricsLog:
    """metrics.jsonl, one JSON object a line, flushed as written; each line also to the reporter.

    Only rank 0 writes (the other processes log into memory). A new run that replaces
    another (--overwrite) writes aside, to `pending`, until its first checkpoint exists.
    """

    def __init__(
        self, path: Path, reporter: Reporter, write: bool = True, pending: Path | None = None, resumed_at: int | None = None,
    ):
        self.path, self.reporter = path, reporter
        if not write:
            self.file = io.StringIO()
        elif pending is not None:
            self.file = open(pending, "w", encoding="utf-8")
        else:
            self.file = open_metrics(path, resumed_at)

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def write(self, metrics: dict) -> None:
        if not metrics:
            return
        try:
            self.file.write(json.dumps(metrics) + "\n")
            self.file.flush()
        except OSError as err:  # a full disk shows here first: stop, the checkpoints are whole
            raise UserError(f"{self.path}: cannot write ({err.strerror or err})") from None
        self.reporter.log(metrics)


def open_metrics(path: Path, resumed_at: int | None = None):
    """metrics.jsonl for appending, on a fresh line (a killed run may have left half of one).

    `resumed_at`: the step a resumed run restarts from. A run killed without saving (kill -9,
    a power cut) logged steps after its last checkpoint; they are dropped, since the resumed
    run logs those steps again, and curves must not step back in time."""
    if resumed_at is not None:
        drop_lines_after(path, resumed_at)
    handle = open(path, "a+b")
    try:
        handle.seek(0, io.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, io.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
    finally:
        handle.close()
    return open(path, "a", encoding="utf-8")


def drop_lines_after(path: Path, step: int) -> None:
    """Rewrite metrics.jsonl (atomically) without its lines of steps after `step`, if it has any."""
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return
    kept = [line for line in lines if not _logged_after(line, step)]
    if len(kept) != len(lines):
        write_atomic(path, b"".join(kept))  # a failure is already one UserError naming the file


def _logged_after(line: bytes, step: int) -> bool:
    try:
        logged = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return False  # not a metrics line (tt info skips those): left as it is
    return isinstance(logged, int) and logged > step
