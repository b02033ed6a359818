"""What `tt train` prints: the corpus summary, the line before training, the last line."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from rich.table import Table

from tt.cli.durations import format_seconds, signal_name
from tt.data.prepared_folder import PreparedCorpus
from tt.data.tokenizer import vocabulary_sizes
from tt.model.distributed import Cluster
from tt.model.train import Trainer
from tt.model.transformer import count_parameters


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def starting_message(trainer: Trainer, cluster: Cluster) -> str:
    where = f"{trainer.device.type}, {plural(torch.get_num_threads(), 'thread')}" if trainer.device.type == "cpu" else str(trainer.device)
    if cluster.distributed:
        where = f"{cluster.world_size} processes × {where}"
    config = trainer.config
    accum = f", accumulated over {config.accum_steps} pieces" if config.accum_steps > 1 else ""
    return (
        f"training {count_parameters(trainer.model):,} parameters, {trainer.precision}, "
        f"{trainer.stream.batches_per_epoch():,} batches of ≤{config.batch_tokens:,} tokens per epoch{accum}, {where}"
    )


def stopped_message(trainer: Trainer, out: Path) -> str:
    command = f"tt train --out {out} --resume"
    if trainer.cluster.distributed:  # any number of processes will do (see the README), torchrun included
        command = f"torchrun … -m tt.cli train --out {out} --resume (or {command}, on one process)"
    return (
        f"[yellow]stopped:[/] interrupted by {signal_name(trainer.stop_signal)} at step {trainer.step}; checkpoint saved to {out}/\n"
        f"continue with: {command}"
    )


def done_message(trainer: Trainer, reason: str, out: Path) -> str:
    last = trainer.last_dev
    dev_text = f", dev loss {last['dev_loss']:.3f} (perplexity {last['dev_ppl']:.2f})" if last else ""
    if trainer.best and "landed" in trainer.best:  # never an average: that record is written anew
        dev_text += (
            f"; model.safetensors holds the last weights, where the cool-down landed (dev BLEU {trainer.best['dev_bleu']:.2f};"
            f" step {trainer.best['landed']['step']} scored {trainer.best['landed']['dev_bleu']:.2f} with a higher dev loss)"
        )
    elif trainer.best:
        averaged = f" (mean of the last {trainer.best['averaged_last']} evaluations)" if "averaged_last" in trainer.best else ""
        dev_text += f"; model.safetensors holds the best dev BLEU, {trainer.best['dev_bleu']:.2f} at step {trainer.best['step']}{averaged}"
    return (
        f"[green]done:[/] {reason} at step {trainer.step} after {format_seconds(round(trainer.elapsed()))}"
        f"{dev_text}; saved to {out}/\n"
        f'next: tt translate --model {out} "…"'
    )


def summary_record(data: PreparedCorpus, model) -> dict:
    return {
        "cleaning": dict(data.report.rows()),
        "train_pairs": data.train_pairs,
        "dev_pairs": len(data.dev),
        "tokenizer": asdict(data.tokenizer_report),
        "parameters": count_parameters(model),
    }


def summary_table(data: PreparedCorpus, model, automatic_dev: bool = True) -> Table:
    """`automatic_dev`: no --dev and no --dev-size, so an empty dev set was tt's choice."""
    table = Table(title="corpus and tokenizer", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in data.report.rows():
        table.add_row(label, f"{value:,}")
    table.add_row("train pairs", f"{data.train_pairs:,}")
    table.add_row("dev pairs", f"{len(data.dev):,}" if data.dev else "none (corpus under 1,000 pairs)" if automatic_dev else "none")
    report = data.tokenizer_report
    if report.shared_characters is not None:  # tt chose joint or separate from the text
        choice = "one joint vocabulary" if data.tokenizer.joint else "one vocabulary per language"
        table.add_row("characters in common", f"{report.shared_characters:.0%}: {choice}")
    table.add_row("vocabulary", vocabulary_sizes(report.src_vocab_size, report.vocab_size))
    table.add_row("character coverage", f"{report.character_coverage:.4%}")
    share = report.byte_pieces / max(report.pieces, 1)
    table.add_row("byte-fallback pieces", f"{report.byte_pieces:,} of {report.pieces:,} ({share:.2%})")
    table.add_row("model parameters", f"{count_parameters(model):,}")
    return table
