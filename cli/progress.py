"""The rich progress bar of `tt train` (on stderr): step, loss, perplexity, lr, tokens/s, ETA."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tt.model.train import TrainConfig, Trainer, learning_rate


class TrainingProgress:
    """A `tt.model.train.Reporter`: the bar advances toward whichever limit comes first."""

    def __init__(self, console: Console, config: TrainConfig):
        self.console, self.config = console, config
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]:>6}"),
            BarColumn(bar_width=24),
            TextColumn("loss {task.fields[loss]}  ppl {task.fields[ppl]}  lr {task.fields[lr]}  {task.fields[speed]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None
        self.smoothed: float | None = None
        self.speed = "…"

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task("train", total=1000, step=0, loss="…", ppl="…", lr="…", speed="…")
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def fraction(self, trainer: Trainer) -> float:
        c = self.config
        parts = [0.0]
        if c.max_steps:
            parts.append(trainer.step / c.max_steps)
        if c.max_epochs:
            parts.append(trainer.stream.epochs_done / c.max_epochs)
        if c.max_time:
            parts.append(trainer.elapsed() / c.max_time)
        return min(max(parts), 1.0)

    def step(self, trainer: Trainer, loss: float) -> None:
        # Mean −ln p of the reference tokens, smoothed over recent steps for a readable bar.
        self.smoothed = loss if self.smoothed is None else 0.95 * self.smoothed + 0.05 * loss
        self.progress.update(
            self.task,
            completed=1000 * self.fraction(trainer),
            step=trainer.step,
            loss=f"{self.smoothed:.3f}",
            ppl=f"{math.exp(min(self.smoothed, 50)):.1f}",
            lr=f"{learning_rate(trainer.step, self.config):.2e}",
            speed=self.speed,
        )

    def log(self, metrics: dict) -> None:
        if "tokens_per_s" in metrics:
            self.speed = f"{metrics['tokens_per_s']:,.0f}"
        if "dev_loss" in metrics:
            bleu = f"  dev BLEU {metrics['dev_bleu']:.2f}" if "dev_bleu" in metrics else ""
            self.progress.console.print(
                f"step {metrics['step']:>6}  dev loss {metrics['dev_loss']:.3f}  dev perplexity {metrics['dev_ppl']:.2f}{bleu}"
            )
