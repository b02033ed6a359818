"""The training loop: batches → loss → backprop → AdamW, with warm-up, logging and checkpoints.

    for each batch:
        log_probs = model(src, tgt_in)                 teacher forcing, all positions at once
        loss = KL(q ‖ p) averaged over real tokens     tt.model.loss
        loss.backward(); clip gradients; AdamW step at lr(step)

The learning rate rises linearly for `warmup_steps`, then decays as 1/√step (the
schedule of the original paper, with the peak given directly). On CPUs with bfloat16
support the forward and backward passes run under bfloat16 autocast while the master
weights and Adam's moments stay float32.

This module does no printing: a `reporter` (the CLI's progress bar) receives the numbers.
"""

from __future__ import annotations

import json
import math
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch

from tt.data.batches import BatchStream, make_batch, plan_batches
from tt.data.errors import UserError
from tt.data.tokenizer import PAD_ID, Tokenizer
from tt.model.checkpoint import (
    CONFIG, METRICS, load_training_state, save_model_folder, save_training_state, write_json,
)
from tt.model.decode import greedy_decode
from tt.model.evaluate import score_corpus
from tt.model.loss import label_smoothed_loss
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
    precision: str = "auto"  # auto (bf16 where the CPU has it) | bf16 | fp32


def bf16_supported() -> bool:
    try:
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:
        return False


def resolve_precision(precision: str) -> str:
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(precision)
    return precision


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to the peak, then inverse-square-root decay."""
    step = max(step, 1)
    warmup = max(config.warmup_steps, 1)
    return config.learning_rate * min(step / warmup, math.sqrt(warmup / step))


class Diverged(UserError):
    """The loss or the gradient stopped being a finite number; no update was applied."""


class Reporter(Protocol):
    def step(self, trainer: "Trainer", parts) -> None: ...
    def log(self, metrics: dict) -> None: ...


@dataclass
class DevSet:
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    references: list[str] = field(default_factory=list)  # target text, for BLEU


def dev_bleu(model: Transformer, tokenizer: Tokenizer, dev: DevSet, sentences: int) -> float:
    """Greedy BLEU on the first `sentences` dev pairs: the number best-checkpoint selection uses."""
    was_training = model.training
    hyps = greedy_decode(model, dev.src_ids[:sentences])
    model.train(was_training)
    translations = [tokenizer.decode_tgt(h.tokens) for h in hyps]
    return score_corpus(translations, dev.references[:sentences]).bleu


@torch.no_grad()
def evaluate_loss(model: Transformer, dev: DevSet, batch_tokens: int, smoothing: float) -> dict:
    """Mean per-token loss on the dev set, float32 and no dropout: comparable across runs."""
    was_training = model.training
    model.eval()
    nll = kl = 0.0
    tokens = 0
    lengths = [(len(s), len(t)) for s, t in zip(dev.src_ids, dev.tgt_ids)]
    # The same token-budget batching as training; the order of batches does not change a sum.
    for rows in plan_batches(lengths, batch_tokens, seed=0):
        batch = make_batch([dev.src_ids[i] for i in rows], [dev.tgt_ids[i] for i in rows])
        parts = label_smoothed_loss(model(batch.src, batch.src_pad_mask, batch.tgt_in), batch.tgt_out, smoothing, PAD_ID)
        nll, kl, tokens = nll + float(parts.nll), kl + float(parts.kl), tokens + parts.n_tokens
    model.train(was_training)
    mean_nll = nll / max(tokens, 1)
    return {"dev_loss": mean_nll, "dev_kl": kl / max(tokens, 1), "dev_ppl": math.exp(min(mean_nll, 50))}


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
    ):
        self.model, self.tokenizer, self.stream, self.dev = model, tokenizer, stream, dev
        self.config, self.folder = config, folder
        self.save_record = save_record  # config.json contents, rebuilt at each save
        self.command_start = command_start
        self.precision = resolve_precision(config.precision)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=learning_rate(1, config), betas=(0.9, 0.98), eps=1e-9, weight_decay=config.weight_decay
        )
        self.step = 0
        self.tokens = 0  # real target tokens trained on
        self.elapsed_before = 0.0  # seconds spent in earlier runs of this training (resume)
        self.last_dev: dict = {}
        # Best checkpoint by dev BLEU: model.safetensors holds it, train_state the latest.
        self.best: dict = {}  # {"step", "dev_bleu"} once a BLEU was measured
        self.evaluations_since_best = 0
        self.finishing_seconds = 0.0  # how long the last dev evaluation + save took
        self.snapshots: list[dict[str, torch.Tensor]] = []  # weights at recent dev evaluations (--average-last)
        self.saved_step: int | None = None  # the step of the last checkpoint written
        # Set from a signal handler (Ctrl-C, SIGTERM): the loop finishes its step, saves and stops.
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
        }

    def restore(self) -> list[str]:
        """Load the training state; returns notes on what a changed option did to it."""
        state = load_training_state(self.folder, self.model, self.optimizer)
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
            # `position` counted batches of the old size: continue at the same share of the epoch.
            old = BatchStream(self.stream.src_ids, self.stream.tgt_ids, recorded_tokens, self.stream.seed)
            old.epoch = self.stream.epoch
            share = self.stream.position / old.batches_per_epoch()
            self.stream.position = round(share * self.stream.batches_per_epoch())
            notes.append(f"epoch {self.stream.epoch + 1} goes on from {share:.0%} of its data in batches of the new size")
        return notes

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.command_start)

    def save(self) -> None:
        """The training state always; model.safetensors only while no best checkpoint exists."""
        if not self.selects_best or not self.best:
            save_model_folder(self.folder, self.model, self.tokenizer, self.record())
        else:
            write_json(self.folder / CONFIG, self.record())
        save_training_state(self.folder, self.model, self.optimizer, self.state())
        self.saved_step = self.step

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

    # ---- the loop
    def train_step(self, batch) -> tuple[float, int]:
        self.step += 1
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            log_probs = self.model(batch.src, batch.src_pad_mask, batch.tgt_in)
        parts = label_smoothed_loss(log_probs, batch.tgt_out, self.config.label_smoothing, PAD_ID)
        loss = parts.kl / parts.n_tokens  # mean KL(q‖p) per real target token
        self._check_finite("loss", loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self._check_finite("gradient norm", norm)  # one inf gradient would turn every weight into NaN
        self.optimizer.step()
        self.tokens += parts.n_tokens
        return parts, lr

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

    def run(self, reporter: Reporter) -> str:
        """Train until a limit or a stop request; returns why it stopped.

        A stop request (`stop_signal`, set by the CLI's Ctrl-C/SIGTERM handler) is honoured
        between steps, so the checkpoint written on the way out is a whole step.
        """
        if self.step == 0:  # a resumed run continues the RNG stream restored from its state
            torch.manual_seed(self.config.seed)
        self.model.train()
        with open(self.folder / METRICS, "a", encoding="utf-8") as metrics_file:
            reason = self._loop(metrics_file, reporter)
            if self.stop_signal is not None:
                self.model.eval()
                self.save()  # straight out: no dev evaluation, the user is waiting
                return reason
            if self.dev is not None and self.step % self.config.dev_every != 0:
                self._evaluate(metrics_file, reporter)
            if self.selects_best and self.config.average_last > 1 and len(self.snapshots) > 1:
                self._try_average(metrics_file, reporter)
        self.model.eval()
        self.save()
        return reason

    def _loop(self, metrics_file, reporter: Reporter) -> str:
        window = _Window()
        last_save = time.monotonic()
        reason = self.limit_reached()
        try:
            batches = iter(self.stream)
            while reason is None:
                started = time.monotonic()  # batch assembly counts as training time
                batch = next(batches)
                parts, lr = self.train_step(batch)
                window.add(parts, time.monotonic() - started)
                reporter.step(self, parts)
                due = self.step % self.config.log_every == 0 or window.age() >= self.config.log_seconds
                if due:
                    self._write(metrics_file, reporter, window.metrics(self, lr))
                    window = _Window()
                if self.dev is not None and self.step % self.config.dev_every == 0:
                    self._evaluate(metrics_file, reporter)
                reason = self.limit_reached()
                if self.stop_signal is not None:
                    reason = f"interrupted by {signal_name(self.stop_signal)}"
                elif reason is None and time.monotonic() - last_save >= self.config.save_every:
                    self.save()
                    last_save = time.monotonic()
        finally:
            if window.steps:
                self._write(metrics_file, reporter, window.metrics(self, learning_rate(self.step, self.config)))
        return reason

    def _evaluate(self, metrics_file, reporter) -> None:
        started = time.monotonic()
        self.last_dev = evaluate_loss(self.model, self.dev, self.config.batch_tokens, self.config.label_smoothing)
        if self.selects_best:
            bleu = dev_bleu(self.model, self.tokenizer, self.dev, self.config.dev_bleu_sentences)
            self.last_dev["dev_bleu"] = bleu
            if not self.best or bleu > self.best["dev_bleu"]:
                self.best = {"step": self.step, "dev_bleu": bleu}
                self.evaluations_since_best = 0
                save_model_folder(self.folder, self.model, self.tokenizer, self.record())
            else:
                self.evaluations_since_best += 1
            if self.config.average_last > 1:
                weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.snapshots = [*self.snapshots, weights][-self.config.average_last :]
        self.finishing_seconds = time.monotonic() - started
        self._write(metrics_file, reporter, {"step": self.step, "elapsed_s": round(self.elapsed(), 2), **self.last_dev})

    def _try_average(self, metrics_file, reporter) -> None:
        """Mean of the last snapshots' weights: kept as model.safetensors if its dev BLEU is higher.

        Averaging nearby points of one run smooths out the noise of the last updates; it
        often scores a little higher than any single one of them. Training state keeps the
        latest (unaveraged) weights, so --resume continues the real run.
        """
        averaged = Transformer(self.model.config)
        averaged.load_state_dict({k: torch.stack([s[k].float() for s in self.snapshots]).mean(0) for k in self.snapshots[0]})
        bleu = dev_bleu(averaged, self.tokenizer, self.dev, self.config.dev_bleu_sentences)
        self._write(metrics_file, reporter, {"step": self.step, "averaged_last": len(self.snapshots), "dev_bleu_averaged": bleu})
        if bleu > self.best.get("dev_bleu", float("-inf")):
            self.best = {"step": self.step, "dev_bleu": bleu, "averaged_last": len(self.snapshots)}
            save_model_folder(self.folder, averaged, self.tokenizer, self.record())

    def _write(self, metrics_file, reporter, metrics: dict) -> None:
        metrics_file.write(json.dumps(metrics) + "\n")
        metrics_file.flush()
        reporter.log(metrics)


class _Window:
    """Running sums between two metrics lines."""

    def __init__(self):
        self.started = time.monotonic()
        self.steps = self.tokens = 0
        self.kl = self.cross_entropy = self.entropy = self.nll = self.seconds = 0.0

    def add(self, parts, seconds: float) -> None:
        self.steps += 1
        self.tokens += parts.n_tokens
        self.kl += float(parts.kl.detach())
        self.cross_entropy += float(parts.cross_entropy.detach())
        self.entropy += float(parts.entropy)
        self.nll += float(parts.nll.detach())
        self.seconds += seconds

    def age(self) -> float:
        return time.monotonic() - self.started

    def metrics(self, trainer: Trainer, lr: float) -> dict:
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
