"""The rich progress bar of `tt train` (on stderr): step, loss, perplexity, lr, tokens/s, ETA."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tt.model.train import Trainer


class TrainingProgress:
    """A `tt.model.train.Reporter`: the bar advances toward whichever limit comes first."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]step {task.fields[step]:>6}"),
            BarColumn(bar_width=24),
            TextColumn("KL+H(q) {task.fields[loss]}  CE {task.fields[ce]}  ppl {task.fields[ppl]}  lr {task.fields[lr]}  {task.fields[speed]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None
        self.smoothed: dict[str, float] = {}
        self.speed = "…"
        # In a pipe or a log file a bar cannot redraw: each metrics line is printed instead.
        self.live = console.is_terminal

    def __enter__(self):
        if self.live:
            self.progress.__enter__()
            self.task = self.progress.add_task("train", total=1000, step=0, loss="…", ce="…", ppl="…", lr="…", speed="…")
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc) if self.live else None

    def step(self, trainer: Trainer, parts) -> None:
        """The loss as training computes it, KL(q‖p) + H(q), beside the plain CE −ln p(reference).

        Per-token means, smoothed over recent steps so the numbers can be read as they move.
        """
        if not self.live:
            return
        n = max(parts.n_tokens, 1)
        latest = {"kl": parts.kl / n, "entropy": parts.entropy / n, "nll": parts.nll / n}
        for key, value in latest.items():
            self.smoothed[key] = value if key not in self.smoothed else 0.95 * self.smoothed[key] + 0.05 * value
        kl, entropy, nll = self.smoothed["kl"], self.smoothed["entropy"], self.smoothed["nll"]
        self.progress.update(
            self.task,
            completed=1000 * trainer.progress(),
            step=trainer.step,
            loss=f"{kl:.3f}+{entropy:.3f}",
            ce=f"{nll:.3f}",
            ppl=f"{math.exp(min(nll, 50)):.1f}",
            lr=f"{trainer.lr:.2e}",
            speed=self.speed,
        )

    def log(self, metrics: dict) -> None:
        if "dev_bleu_averaged" in metrics:
            self.console.print(
                f"mean of the weights at the last {metrics['averaged_last']} evaluations: dev BLEU {metrics['dev_bleu_averaged']:.2f}"
            )
        if metrics.get("kept") == "landed":
            self.console.print(
                f"kept the last weights, where the cool-down landed, over step {metrics['passed_over_step']}'s"
                f" (dev BLEU {metrics['passed_over_dev_bleu']:.2f} there, but a higher dev loss)"
            )
        if "tokens_per_s" in metrics:
            self.speed = f"{metrics['tokens_per_s']:,.0f}"
            if not self.live:  # the metrics line's own numbers: means over the window since the last one
                self.console.print(
                    f"step {metrics['step']:>6}  KL+H(q) {metrics['kl']:.3f}+{metrics['entropy_floor']:.3f}  CE {metrics['nll']:.3f}"
                    f"  ppl {metrics['ppl']:.1f}  lr {metrics['lr']:.2e}  {self.speed} tok/s  {clock(metrics['elapsed_s'])}",
                    soft_wrap=True,
                )
        if "dev_loss" in metrics:
            bleu = f"  dev BLEU {metrics['dev_bleu']:.2f}" if "dev_bleu" in metrics else ""
            self.console.print(
                f"step {metrics['step']:>6}  dev loss {metrics['dev_loss']:.3f}  dev perplexity {metrics['dev_ppl']:.2f}{bleu}"
            )



def clock(seconds: float) -> str:
    """0:07, 14:32, 1:02:09: time since training started, as the bar shows it."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class PreparationProgress:
    """A `tt.data.prepare.Progress`: one bar per stage, counting pairs (and pairs/s) on stderr."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed:,.0f} pairs"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = None

        self.live = console.is_terminal  # in a pipe or a log file, no bar: only the notes

    def __enter__(self) -> "PreparationProgress":
        if self.live:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc) if self.live else None

    def stage(self, description: str, total: int | None = None) -> None:
        if not self.live:
            return
        if self.task is not None:
            self.progress.update(self.task, visible=False)
        self.task = self.progress.add_task(description + "…", total=total, speed="")

    def advance(self, pairs: int) -> None:
        if not self.live or self.task is None:
            return
        self.progress.advance(self.task, pairs)
        speed = self.progress.tasks[-1].speed
        if speed:
            self.progress.update(self.task, speed=f"{speed:,.0f} pairs/s")

    def note(self, text: str) -> None:
        self.console.print(text)
