"""The training loop: batches → loss → backprop → AdamW, with warm-up, logging and checkpoints.

    for each batch:
        log_probs = model(src, tgt_in)                 teacher forcing, all positions at once
        loss = KL(q ‖ p) averaged over real tokens     tt.model.loss
        loss.backward(); clip gradients; AdamW step at lr(step)

The learning rate rises linearly for `warmup_steps`, then decays as 1/√step (the
schedule of the original paper, with the peak given directly). Where the hardware does
bfloat16 fast (recent CPUs and GPUs) the forward and backward passes run under bfloat16
autocast while the master weights and Adam's moments stay float32 (`tt.model.device`).

Under torchrun, each process trains on its share of every batch and DistributedDataParallel
averages the gradients (`tt.model.distributed`); with `accum_steps` a process adds up the
gradients of several pieces before one update. Either way one update sees one whole batch.

This module does no printing: a `reporter` (the CLI's progress bar) receives the numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from tt.data.batches import BatchStream
from tt.data.errors import UserError
from tt.data.tokenizer import PAD_ID, Tokenizer
from tt.model.checkpoint import (
    CONFIG, METRICS, PENDING_METRICS, STATE_TENSORS, load_training_state, save_model_folder,
    save_training_state, write_json,
)
from tt.model.run_folder import retire_previous_run
from tt.model.device import autocast, resolve_device, resolve_precision
from tt.model.distributed import Cluster, all_reduce_max, all_reduce_sum, rng_tensors, seed_random_numbers, shares
from tt.model.evaluate import DevSet, average_weights, dev_bleu, evaluate_loss
from tt.model.loss import label_smoothed_loss
from tt.model.metrics import MetricsWindow, Reporter, Silent, StepTotals
from tt.model.transformer import Transformer


@dataclass
class TrainConfig:
    batch_tokens: int = 2048  # per batch, padding included (measured: more, smaller steps win at 15 min)
    learning_rate: float = 1e-3  # the peak, reached at the end of warm-up
    warmup_steps: int = 300
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    max_steps: int | None = None
    max_epochs: float | None = None
    max_time: float | None = None  # seconds of the whole command, tokenizer and dev included
    dev_every: int = 500  # steps between dev evaluations (loss, and greedy BLEU)
    dev_bleu_sentences: int = 500  # dev sentences translated for BLEU; 0 = dev loss only
    patience: int | None = None  # stop after this many dev evaluations without a better BLEU
    average_last: int = 0  # at the end, also try the mean of the weights at the last N dev evaluations
    log_every: int = 50  # steps between metrics lines (and at least every log_seconds)
    log_seconds: float = 10.0
    save_every: float = 120.0  # seconds between checkpoints
    seed: int = 1
    precision: str = "auto"  # auto (bf16 where the hardware does it fast) | bf16 | fp32
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    accum_steps: int = 1  # gradient accumulation: a process's share of each batch, in this many pieces


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to the peak, then inverse-square-root decay."""
    step = max(step, 1)
    warmup = max(config.warmup_steps, 1)
    return config.learning_rate * min(step / warmup, math.sqrt(warmup / step))


class Diverged(UserError):
    """The loss or the gradient stopped being a finite number; no update was applied."""


@dataclass
class Decision:
    """What the loop does after a step: stop for a limit or a signal, or save."""

    limit: str | None
    signal: int | None
    save: bool


class Trainer:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        stream: BatchStream,
        dev: DevSet | None,
        config: TrainConfig,
        folder: Path,
        save_record: Callable[[], dict],
        command_start: float,
        cluster: Cluster | None = None,
        new_run: bool = False,
    ):
        self.tokenizer, self.stream, self.dev = tokenizer, stream, dev
        self.config, self.folder = config, folder
        self.save_record = save_record  # config.json contents, rebuilt at each save
        self.command_start = command_start
        self.cluster = cluster or Cluster()
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.model = model.to(self.device)  # in place: the optimizer below holds these same tensors
        self.ddp: DistributedDataParallel | None = None  # wraps the model under torchrun (see run)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=learning_rate(1, config), betas=(0.9, 0.98), eps=1e-9, weight_decay=config.weight_decay
        )
        self.step = 0
        self.tokens = 0  # real target tokens trained on, all processes together
        self.elapsed_before = 0.0  # seconds spent in earlier runs of this training (resume)
        self.last_dev: dict = {}
        # Best checkpoint by dev BLEU: model.safetensors holds it, train_state the latest.
        self.best: dict = {}  # {"step", "dev_bleu"} once a BLEU was measured
        self.evaluations_since_best = 0
        self.finishing_seconds = 0.0  # how long the last dev evaluation + save took
        self.snapshots: list[dict[str, torch.Tensor]] = []  # weights at recent dev evaluations (--average-last)
        self.saved_step: int | None = None  # the step of the last checkpoint written
        # A new run keeps its metrics aside and leaves an older run's files in the folder
        # (--overwrite) until its own first checkpoint exists: see retire_previous_run.
        self.replacing = new_run and self.cluster.is_main
        self.restored_rng: dict[str, torch.Tensor] | None = None
        # Set from a signal handler (Ctrl-C, SIGTERM), at any moment: a request.
        self.stop_requested: int | None = None
        # The signal the loop actually stopped for, after the step it was in and (under
        # torchrun) agreed by all processes at the same step.
        self.stop_signal: int | None = None

    @property
    def selects_best(self) -> bool:
        return self.dev is not None and bool(self.dev.references) and self.config.dev_bleu_sentences > 0

    # ---- state
    def state(self) -> dict:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed_s": self.elapsed(),
            "epoch": self.stream.epoch,
            "position": self.stream.position,
            "last_dev": self.last_dev,
            "best": self.best,
            "evaluations_since_best": self.evaluations_since_best,
            "batch_tokens": self.config.batch_tokens,  # the plan `position` counts batches of
            "processes": self.cluster.world_size,
        }

    def restore(self) -> list[str]:
        """Load the training state; returns notes on what a changed option did to it."""
        state, self.restored_rng = load_training_state(self.folder, self.model, self.optimizer)
        for group in self.optimizer.param_groups:  # restored with the old run's settings: this run's apply
            group["weight_decay"] = self.config.weight_decay
        self.step, self.tokens = state["step"], state["tokens"]
        self.saved_step = self.step
        self.elapsed_before = state["elapsed_s"]
        self.stream.epoch, self.stream.position = state["epoch"], state["position"]
        self.last_dev = state.get("last_dev", {})
        self.best = state.get("best", {})
        self.evaluations_since_best = state.get("evaluations_since_best", 0)
        notes = []
        recorded_tokens = state.get("batch_tokens", self.config.batch_tokens)
        if recorded_tokens != self.config.batch_tokens:
            share = self.stream.continue_from(recorded_tokens)
            notes.append(f"epoch {self.stream.epoch + 1} goes on from {share:.0%} of its data in batches of the new size")
        processes = state.get("processes", 1)
        if processes != self.cluster.world_size:
            notes.append(f"processes: {processes} before, {self.cluster.world_size} now (the same batches, cut in other shares)")
        return notes

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.command_start)

    def save(self) -> None:
        """The training state always; model.safetensors only while no best checkpoint exists.

        Every process must call this at the same step (the RNG states are gathered); only
        rank 0 writes.
        """
        rng = rng_tensors(self.cluster, self.device)
        if not self.cluster.is_main:
            return
        if not self.selects_best or not self.best:
            written = save_model_folder(self.folder, self.model, self.tokenizer, self.record())
        else:
            write_json(self.folder / CONFIG, self.record())
            written = {CONFIG}
        save_training_state(self.folder, self.model, self.optimizer, self.state(), rng)
        self.saved_step = self.step
        self._checkpoint_written(written | {STATE_TENSORS})

    def _checkpoint_written(self, written: set[str]) -> None:
        if self.replacing:
            retire_previous_run(self.folder, written)
            self.replacing = False

    def record(self) -> dict:
        return {**self.save_record(), "step": self.step, "best": self.best, "model": asdict(self.model.config)}

    # ---- limits
    def limit_reached(self) -> str | None:
        c = self.config
        if c.max_steps is not None and self.step >= c.max_steps:
            return f"reached --max-steps {c.max_steps}"
        if c.max_epochs is not None and self.stream.epochs_done >= c.max_epochs:
            return f"reached --max-epochs {c.max_epochs:g}"
        # The limit covers the whole command: leave room for the last dev evaluation and save.
        if c.max_time is not None and self.elapsed() + self.finishing_seconds >= c.max_time:
            return f"reached --max-time {format_seconds(c.max_time)}"
        if c.patience is not None and self.evaluations_since_best >= c.patience:
            return f"stopped early: no better dev BLEU in {c.patience} evaluations (best {self.best.get('dev_bleu', 0):.2f} at step {self.best.get('step')})"
        return None

    def agreed_limit(self) -> str | None:
        """`limit_reached`, decided once for all processes (their clocks differ a little)."""
        reason = self.limit_reached()
        if not self.cluster.distributed:
            return reason
        (anyone,) = all_reduce_max([float(reason is not None)], self.device)
        return reason or ("stopped with the other processes (a limit)" if anyone else None)

    # ---- one update
    def train_step(self, rows: list[int]) -> tuple[StepTotals, float]:
        """One update on the batch of sentences `rows`; this process trains on its share.

        The loss is Σ KL over the batch's real target tokens divided by their number N, the
        whole batch's, so that every piece's gradient is already in its final scale: the
        pieces' gradients add up, in one process or (averaged by DDP, hence × processes)
        across many, to the gradient of the whole batch's mean loss.
        """
        self.step += 1
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        world, accum, rank = self.cluster.world_size, self.config.accum_steps, self.cluster.rank
        pieces = shares(rows, world * accum)[rank * accum : (rank + 1) * accum]
        n_tokens = self.stream.target_tokens(rows)
        forward = self.ddp or self.model
        totals = StepTotals()
        self.optimizer.zero_grad(set_to_none=True)
        for index, piece in enumerate(pieces):
            weight = 1.0
            if not piece:  # fewer sentences than pieces: this one still joins the gradient sum, with 0
                piece, weight = rows[:1], 0.0
            batch = self.stream.batch(piece).to(self.device)
            last = index == len(pieces) - 1
            # DDP all-reduces gradients during backward; pieces before the last only accumulate.
            synchronizing = contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync()
            with synchronizing:
                with autocast(self.device, self.precision):
                    log_probs = forward(batch.src, batch.src_pad_mask, batch.tgt_in)
                parts = label_smoothed_loss(log_probs, batch.tgt_out, self.config.label_smoothing, PAD_ID)
                loss = parts.kl / n_tokens * (weight * world)  # mean KL(q‖p) per real target token
                if not self.cluster.distributed:  # one process alone may stop here; see below for many
                    self._check_finite("loss", loss)
                loss.backward()
            totals.add(parts, weight)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        # The same on every process (gradients are all-reduced): a NaN loss anywhere shows here,
        # and all processes stop together. One inf gradient would turn every weight into NaN.
        self._check_finite("gradient norm", norm)
        self.optimizer.step()
        return totals, lr

    def _check_finite(self, what: str, value: torch.Tensor) -> None:
        """Stop before a non-finite number reaches the weights: the last checkpoint stays good."""
        if torch.isfinite(value):
            return
        self.step -= 1  # this step was never applied
        kept = (
            f"{self.folder} keeps the checkpoint of step {self.saved_step}; continue from it with a lower "
            f"learning rate: tt train --out {self.folder} --resume --lr {self.config.learning_rate / 2:g}"
            if self.saved_step is not None
            else f"no checkpoint was written yet; start again with a lower --lr than {self.config.learning_rate:g}"
        )
        raise Diverged(f"training diverged at step {self.step + 1}: the {what} is {float(value.detach())}; {kept}")

    # ---- the loop
    def run(self, reporter: Reporter) -> str:
        """Train until a limit or a stop request; returns why it stopped.

        A stop request (`stop_requested`, set by the CLI's Ctrl-C/SIGTERM handler) is
        honoured between steps, so the checkpoint written on the way out is a whole step.
        """
        seed_random_numbers(self.cluster, self.device, self.config.seed, self.step, self.restored_rng)
        if self.cluster.distributed and self.ddp is None:
            device_ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None  # set from LOCAL_RANK
            self.ddp = DistributedDataParallel(self.model, device_ids=device_ids)
        if not self.cluster.is_main:
            reporter = Silent()
        self.model.train()
        if not self.cluster.is_main:
            metrics = io.StringIO()
        elif self.replacing:
            metrics = open(self.folder / PENDING_METRICS, "w", encoding="utf-8")
        else:
            metrics = open_metrics(self.folder / METRICS)
        try:
            return self._run(metrics, reporter)
        finally:
            if self.replacing:  # ended before its first checkpoint: the folder is as it was
                (self.folder / PENDING_METRICS).unlink(missing_ok=True)

    def _run(self, metrics, reporter: Reporter) -> str:
        with metrics as metrics_file:
            reason = self._loop(metrics_file, reporter)
            if self.stop_signal is not None:
                self.model.eval()
                self.save()  # straight out: no dev evaluation, the user is waiting
                return reason
            if self.dev is not None and self.step % self.config.dev_every != 0:
                self._write(metrics_file, reporter, self._evaluate())
            if self.selects_best and self.config.average_last > 1 and len(self.snapshots) > 1:
                self._try_average(metrics_file, reporter)
        self.model.eval()
        self.save()
        return reason

    def _loop(self, metrics_file, reporter: Reporter) -> str:
        window = MetricsWindow()
        last_save = time.monotonic()
        reason = self.agreed_limit()
        try:
            batches = self.stream.rows()
            while reason is None:
                started = time.monotonic()  # batch assembly counts as training time
                totals, lr = self.train_step(next(batches))
                step_seconds = time.monotonic() - started
                dev_metrics = None
                if self.dev is not None and self.step % self.config.dev_every == 0:
                    dev_metrics = self._evaluate()  # before the agreement: patience and its time count now
                save_due = time.monotonic() - last_save >= self.config.save_every
                totals, decision = self._agree(totals, Decision(self.limit_reached(), self.stop_requested, save_due))
                self.tokens += totals.n_tokens
                window.add(totals, step_seconds)
                reporter.step(self, totals)
                if self.step % self.config.log_every == 0 or window.age() >= self.config.log_seconds:
                    self._write(metrics_file, reporter, window.metrics(self, lr))
                    window = MetricsWindow()
                if dev_metrics is not None:
                    self._write(metrics_file, reporter, dev_metrics)
                # Only the agreed decision counts from here: a clock or a signal read again
                # now could differ between processes, and one would save while another trains.
                if decision.signal is not None:
                    self.stop_signal = decision.signal
                    reason = f"interrupted by {signal_name(decision.signal)}"
                elif decision.limit is not None:
                    reason = decision.limit
                elif decision.save:
                    self.save()
                    last_save = time.monotonic()
        finally:
            if window.steps:
                self._write(metrics_file, reporter, window.metrics(self, learning_rate(self.step, self.config)))
        return reason

    def _agree(self, totals: StepTotals, mine: "Decision") -> tuple[StepTotals, "Decision"]:
        """All processes: the whole batch's sums, and one decision to stop or save.

        Each process has its own clock and receives signals on its own (patience and the
        time taken by dev evaluations live on rank 0 alone), so without this they could stop
        or save at different steps and wait forever for each other. One all-reduce carries
        it all; rank 0's clock decides saves.
        """
        if not self.cluster.distributed:
            return totals, mine
        flags = [float(mine.limit is not None), float(mine.signal or 0), float(mine.save and self.cluster.is_main)]
        summed = all_reduce_sum(totals.values(), self.device)
        anyone = all_reduce_max(flags, self.device)
        limit = (mine.limit or "stopped with the other processes (a limit)") if anyone[0] else None
        signal_number = int(anyone[1]) or None
        if signal_number is not None and self.stop_requested is None:
            self.stop_requested = signal_number  # another process was interrupted: this one stops with it
        return StepTotals.from_values(summed), Decision(limit, signal_number, bool(anyone[2]))

    def _evaluate(self) -> dict:
        """Dev loss and BLEU, on rank 0 only (the others wait at the step's agreement).

        Returns the metrics line to write ({} on other processes).
        """
        if not self.cluster.is_main:
            return {}
        started = time.monotonic()
        self.last_dev = evaluate_loss(self.model, self.dev, self.config.batch_tokens, self.config.label_smoothing)
        if self.selects_best:
            bleu = dev_bleu(self.model, self.tokenizer, self.dev, self.config.dev_bleu_sentences)
            self.last_dev["dev_bleu"] = bleu
            if not self.best or bleu > self.best["dev_bleu"]:
                self.best = {"step": self.step, "dev_bleu": bleu}
                self.evaluations_since_best = 0
                self._checkpoint_written(save_model_folder(self.folder, self.model, self.tokenizer, self.record()))
            else:
                self.evaluations_since_best += 1
            if self.config.average_last > 1:
                weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.snapshots = [*self.snapshots, weights][-self.config.average_last :]
        self.finishing_seconds = time.monotonic() - started
        return {"step": self.step, "elapsed_s": round(self.elapsed(), 2), **self.last_dev}

    def _try_average(self, metrics_file, reporter) -> None:
        """Mean of the last snapshots' weights: kept as model.safetensors if its dev BLEU is higher.

        Averaging nearby points of one run smooths out the noise of the last updates; it
        often scores a little higher than any single one of them. Training state keeps the
        latest (unaveraged) weights, so --resume continues the real run.
        """
        if not self.cluster.is_main:
            return
        averaged = average_weights(self.model.config, self.snapshots).to(self.device)
        bleu = dev_bleu(averaged, self.tokenizer, self.dev, self.config.dev_bleu_sentences)
        self._write(metrics_file, reporter, {"step": self.step, "averaged_last": len(self.snapshots), "dev_bleu_averaged": bleu})
        if bleu > self.best.get("dev_bleu", float("-inf")):
            self.best = {"step": self.step, "dev_bleu": bleu, "averaged_last": len(self.snapshots)}
            self._checkpoint_written(save_model_folder(self.folder, averaged, self.tokenizer, self.record()))

    def _write(self, metrics_file, reporter, metrics: dict) -> None:
        if not metrics:
            return
        try:
            metrics_file.write(json.dumps(metrics) + "\n")
            metrics_file.flush()
        except OSError as err:  # a full disk shows here first: stop, the checkpoints are whole
            raise UserError(f"{self.folder / METRICS}: cannot write ({err.strerror or err})") from None
        reporter.log(metrics)


def open_metrics(path: Path):
    """metrics.jsonl for appending, on a fresh line (a killed run may have left half of one)."""
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


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def format_seconds(seconds: float) -> str:
    seconds = float(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def parse_duration(text: str) -> float:
    """'90s', '15m', '2h', '1h30m' or plain seconds → seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"cannot read duration {text!r}: use e.g. 90s, 15m, 2h or 1h30m")
    scale = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * scale[u] for n, u in parts)
