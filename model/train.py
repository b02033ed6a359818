"""The training loop: batches → loss → backprop → AdamW, with warm-up, logging and checkpoints.

    for each batch (Trainer.train_step):
        log_probs = model(src, tgt_in)                 teacher forcing, all positions at once
        loss = KL(q ‖ p) averaged over real tokens     tt.model.loss
        loss.backward(); clip gradients; AdamW step at lr(step)

Around each step (Trainer._loop), as named calls: the processes agree on the batch's sums
and on stopping or saving (`tt.model.agreement`), a line of metrics.jsonl is written with the
gradient flow of its last update and the probe sentences' records (`tt.model.metrics`,
`tt.model.probes`), dev evaluations choose the checkpoint (`tt.model.selection`), and the
training state is saved for --resume (`tt.model.run_state`).

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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from tt.data.batches import BatchStream
from tt.data.errors import UserError
from tt.data.tokenizer import PAD_ID, Tokenizer
from tt.model.agreement import Decision, agree, agree_on_limit, agree_on_progress
from tt.model.checkpoint import METRICS, PENDING_METRICS
from tt.model.allocator import keep_freed_memory
from tt.model.device import autocast, resolve_device, resolve_precision
from tt.model.distributed import Cluster, seed_random_numbers, shares
from tt.model.evaluate import DevSet
from tt.model.loss import TeacherForcedLoss
from tt.model.metrics import MetricsLog, MetricsWindow, Reporter, Silent, StepTotals
from tt.model.probes import GradientFlow, ProbeSet
from tt.model.run_state import RunState
from tt.model.selection import DevSelection
from tt.model.transformer import Transformer

DECAYS = ("rsqrt", "constant")  # the learning rate's course after warm-up (TrainConfig.decay)


@dataclass
class TrainConfig:
    batch_tokens: int = 2048  # per batch, padding included (measured: more, smaller steps win at 15 min)
    learning_rate: float = 1e-3  # the peak, reached at the end of warm-up
    warmup_steps: int = 300
    # After warm-up: "rsqrt" decays as 1/√step (the paper's schedule); "constant" holds the
    # peak until the cool-down (warm-up, stable, decay), which keeps long runs moving.
    decay: str = "rsqrt"
    # The last share of the run over which the learning rate falls linearly to 0. Measured on
    # Tatoeba zh→en, 15 minutes on 2 cores (tiny): 0.4 gave 24.3 whole-dev BLEU where none gave 23.5.
    cooldown: float = 0.4
    label_smoothing: float = 0.1
    # Subword regularization (tt.data.subword_sampling): each batch spelled in pieces sampled
    # with this α from the tokenizer (smaller: more varied); 0 keeps the likeliest spelling.
    subword_alpha: float = 0.0
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
    # CPU threads for torch; None: torch's choice. Recorded because sums split over another
    # number of threads round differently: --resume reuses it to stay bit-for-bit.
    threads: int | None = None


def learning_rate(step: int, config: TrainConfig, progress: float = 0.0) -> float:
    """Linear warm-up to the peak, then inverse-square-root decay (or, with decay "constant",
    the peak held); over the last `cooldown` share of the run (`progress` runs from 0 to 1,
    see Trainer.progress), a linear fall to 0.

    Why the fall: the weights wander around a minimum by an amount that scales with the
    step size, and taking the step size to zero lets them settle at its bottom. The last
    weights of a run that ends on a limit are then its best, not a noisy sample.
    """
    step = max(step, 1)
    warmup = max(config.warmup_steps, 1)
    after_warmup = math.sqrt(warmup / step) if config.decay == "rsqrt" else 1.0
    peak_then_decay = config.learning_rate * min(step / warmup, after_warmup)
    if config.cooldown <= 0:
        return peak_then_decay
    return peak_then_decay * min(1.0, max(0.0, (1.0 - progress) / config.cooldown))


class Diverged(UserError):
    """The loss or the gradient stopped being a finite number; no update was applied."""


def adamw(parameters, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, through torch's fused kernel where this torch has one for the device.

    The same update, in one pass over all the weights instead of a handful of tensor
    operations per weight: on 2 CPU cores, 7 ms a step instead of 24-36 ms for the 7.6 M
    weights of the reference shape, 1-2 % of a 4,096-token step there (too little to see
    in 25-second timings, whose noise is ±7 %). Resuming keeps whichever kind the run was
    saved with (the choice is part of the saved param_groups), so a resumed run stays
    bit-for-bit.
    """
    parameters = list(parameters)
    settings = dict(lr=lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=weight_decay)
    try:
        return torch.optim.AdamW(parameters, **settings, fused=True)
    except (RuntimeError, TypeError):  # torch before 2.4 on CPU, or a device without the kernel
        return torch.optim.AdamW(parameters, **settings)


class Trainer(RunState, DevSelection):
    """One training run: the loop below; checkpoints (`RunState`) and dev evaluations (`DevSelection`) around it."""

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
        probes: ProbeSet | None = None,
    ):
        self.tokenizer, self.stream, self.dev = tokenizer, stream, dev
        self.config, self.folder = config, folder
        self.save_record = save_record  # config.json contents, rebuilt at each save
        self.command_start = command_start
        self.cluster = cluster or Cluster()
        self.device = resolve_device(config.device)
        keep_freed_memory()  # each step reuses the last step's pages (tt.model.allocator)
        self.precision = resolve_precision(config.precision, self.device)
        self.model = model.to(self.device)  # in place: the optimizer below holds these same tensors
        self.with_loss = TeacherForcedLoss(self.model, config.label_smoothing, PAD_ID)  # what a step runs forward
        self.ddp: DistributedDataParallel | None = None  # wraps `with_loss` under torchrun (see run)
        self.lr = learning_rate(1, config)  # the last step's learning rate
        self.optimizer = adamw(model.parameters(), self.lr, config.weight_decay)
        self.step = 0
        self.agreed_progress = 0.0  # `progress()` as all processes agreed on it after the last step
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
        self.new_run = new_run
        self.replacing = new_run and self.cluster.is_main
        self.restored_rng: dict[str, torch.Tensor] | None = None
        # Set from a signal handler (Ctrl-C, SIGTERM), at any moment: a request.
        self.stop_requested: int | None = None
        # The signal the loop actually stopped for, after the step it was in and (under
        # torchrun) agreed by all processes at the same step.
        self.stop_signal: int | None = None
        self.probes = probes  # sentences recorded as the model learns them (tt.model.probes)
        self.probe_seconds = 0.0  # the time they took: what probing costs

    # ---- limits
    def limit_reached(self) -> str | None:
        c = self.config
        if c.max_steps is not None and self.step >= c.max_steps:
            return f"reached --max-steps {c.max_steps}"
        if c.max_epochs is not None and self.stream.epochs_done >= c.max_epochs:
            return f"reached --max-epochs {c.max_epochs:g}"
        # The limit covers the whole command: leave room for the last dev evaluation and save.
        if c.max_time is not None and self.elapsed() + self.finishing_seconds >= c.max_time:
            return f"reached --max-time {c.max_time:g}s"
        if c.patience is not None and self.evaluations_since_best >= c.patience:
            return f"stopped early: no better dev BLEU in {c.patience} evaluations (best {self.best.get('dev_bleu', 0):.2f} at step {self.best.get('step')})"
        return None

    def progress(self) -> float:
        """How much of the run is done, from 0 to 1, by whichever limit comes first: the
        clock of the learning rate's cool-down and of the progress bar.

        --patience cannot be foreseen and does not count; a run without limits stays at 0.
        """
        c = self.config
        shares = [0.0]
        if c.max_steps:
            shares.append(self.step / c.max_steps)
        if c.max_epochs:
            shares.append(self.stream.epochs_done / c.max_epochs)
        if c.max_time:  # as limit_reached counts it: with room for the last dev evaluation
            shares.append((self.elapsed() + self.finishing_seconds) / c.max_time)
        return min(max(shares), 1.0)

    def agreed_limit(self) -> str | None:
        """`limit_reached`, decided once for all processes (their clocks differ a little)."""
        return agree_on_limit(self.cluster, self.device, self.limit_reached())

    # ---- one update
    def train_step(self, rows: list[int], flow: GradientFlow | None = None) -> tuple[StepTotals, float]:
        """One update on the batch of sentences `rows`: batch → forward → loss → backward → clip → step.

        This process trains on its share of the batch, in `accum_steps` pieces. The loss is
        Σ KL over the batch's real target tokens divided by their number N, the whole
        batch's, so that every piece's gradient is already in its final scale: the pieces'
        gradients add up, in one process or (averaged by DDP, hence × processes) across
        many, to the gradient of the whole batch's mean loss. `flow`, on the steps that end
        a metrics line, measures the gradient and the update.
        """
        self.step += 1
        lr = self.set_learning_rate()
        n_tokens = self.stream.target_tokens(rows)
        model = self.ddp or self.with_loss
        totals = StepTotals()
        self.optimizer.zero_grad(set_to_none=True)
        for piece, weight, last in self.pieces(rows):
            batch = self.stream.batch(piece).to(self.device)
            with self.gradient_sync(last):
                with autocast(self.device, self.precision):
                    parts = model(batch.src, batch.src_pad_mask, batch.tgt_in, batch.tgt_out)  # forward and loss
                loss = parts.kl / n_tokens * (weight * self.cluster.world_size)  # mean KL(q‖p) per real target token
                if not self.cluster.distributed:  # one process alone may stop here; many stop at the norm below
                    self._check_finite("loss", loss)
                loss.backward()
            totals.add(parts, weight)
        if flow is not None:
            flow.before_update()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        # The same on every process (gradients are all-reduced): a NaN loss anywhere shows here,
        # and all processes stop together. One inf gradient would turn every weight into NaN.
        self._check_finite("gradient norm", norm)
        self.optimizer.step()
        if flow is not None:
            flow.after_update()
        return totals, lr

    def set_learning_rate(self) -> float:
        # The agreed progress, not this process's clock: under torchrun every process must
        # take the same step size, or their copies of the weights drift apart.
        self.lr = learning_rate(self.step, self.config, self.agreed_progress)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        return self.lr

    def pieces(self, rows: list[int]) -> list[tuple[list[int], float, bool]]:
        """This process's share of the batch, in `accum_steps` pieces: (rows, weight, last piece?)."""
        world, accum, rank = self.cluster.world_size, self.config.accum_steps, self.cluster.rank
        mine = shares(rows, world * accum)[rank * accum : (rank + 1) * accum]
        # Fewer sentences than pieces: an empty piece still joins the gradient sum, with weight 0.
        return [(piece or rows[:1], 1.0 if piece else 0.0, i == len(mine) - 1) for i, piece in enumerate(mine)]

    def gradient_sync(self, last: bool):
        """DDP all-reduces gradients during backward; pieces before the last only accumulate."""
        return contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync()

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
        self._start()
        main = self.cluster.is_main
        pending = self.folder / PENDING_METRICS if self.replacing else None
        try:
            resumed_at = None if self.new_run else self.step
            with MetricsLog(self.folder / METRICS, reporter if main else Silent(), main, pending, resumed_at) as log:
                reason = self._loop(log)
                self._record_probes(log)  # the last step's: it describes the weights saved below
                if self.stop_signal is None:  # interrupted: straight out, the user is waiting
                    self._finish(log)
            self.model.eval()
            self.save()
            return reason
        finally:
            if self.replacing:  # ended before its first checkpoint: the folder is as it was
                (self.folder / PENDING_METRICS).unlink(missing_ok=True)

    def _start(self) -> None:
        seed_random_numbers(self.cluster, self.device, self.config.seed, self.step, self.restored_rng)
        if self.cluster.distributed and self.ddp is None:
            device_ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None  # set from LOCAL_RANK
            self.ddp = DistributedDataParallel(self.with_loss, device_ids=device_ids)
        self.model.train()

    def _loop(self, log: MetricsLog) -> str:
        window = MetricsWindow()
        last_save = time.monotonic()
        if self.step == 0:
            self._record_probes(log)  # before any update: what an untrained model makes of them
        reason = self.agreed_limit()
        self.agreed_progress = agree_on_progress(self.cluster, self.device, self.progress())
        try:
            batches = self.stream.rows()
            while reason is None:
                logging = self.step + 1 == self.config.max_steps or self._log_due(window)
                flow = GradientFlow(self.model) if logging and self.cluster.is_main else None
                started = time.monotonic()  # batch assembly counts as training time
                totals, lr = self.train_step(next(batches), flow)
                step_seconds = time.monotonic() - started
                dev_metrics = self._evaluate() if self._dev_due() else None  # before agreeing: patience counts now
                save_due = time.monotonic() - last_save >= self.config.save_every
                mine = Decision(self.limit_reached(), self.stop_requested, save_due, self.progress())
                totals, decision = agree(self.cluster, self.device, totals, mine)
                self.agreed_progress = decision.progress
                if decision.signal is not None and self.stop_requested is None:
                    self.stop_requested = decision.signal  # another process was interrupted: this one stops with it
                self.tokens += totals.n_tokens
                window.add(totals, step_seconds)
                log.reporter.step(self, totals)
                if logging:
                    log.write({**window.metrics(self, lr), **(flow.metrics() if flow else {})})
                    window = MetricsWindow()
                    self._record_probes(log)
                log.write(dev_metrics or {})
                # Only the agreed decision counts from here: a clock or a signal read again
                # now could differ between processes, and one would save while another trains.
                if decision.signal is not None:
                    self.stop_signal = decision.signal
                    reason = "interrupted"
                elif decision.limit is not None:
                    reason = decision.limit
                elif decision.save:
                    self.save()
                    last_save = time.monotonic()
        finally:
            if window.steps:
                log.write(window.metrics(self, self.lr))
        return reason

    def _log_due(self, window: MetricsWindow) -> bool:
        """Does the coming step end a metrics line? Decided before it, so its update can be measured."""
        return (self.step + 1) % self.config.log_every == 0 or window.age() >= self.config.log_seconds

    def _dev_due(self) -> bool:
        return self.dev is not None and self.step % self.config.dev_every == 0

    def _record_probes(self, log: MetricsLog) -> None:
        if self.probes and self.cluster.is_main and self.probes.last_step != self.step:
            started = time.monotonic()
            for line in self.probes.record(self.model, self.step):
                log.write(line)
            self.probe_seconds += time.monotonic() - started

    def _finish(self, log: MetricsLog) -> None:
        """After the last step: a last dev evaluation, and the mean of recent weights if asked."""
        if self.dev is not None and self.step % self.config.dev_every != 0:
            log.write(self._evaluate())
        self._keep_landed_weights(log)
        if self.selects_best and self.config.average_last > 1 and len(self.snapshots) > 1:
            self._try_average(log)
