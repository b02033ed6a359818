"""`tt prepare`: clean, split and tokenize a corpus into a folder `tt train --prepared` reuses.

The same options as `tt train`'s corpus and tokenizer options, and the same defaults, so
that `tt train CORPUS --prepared DIR` with the same options finds the folder ready.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from tt.cli.options import build_configs, check_dev_size, corpus_specs
from tt.cli.presets import preset_configs
from tt.cli.progress import PreparationProgress
from tt.data.errors import UserError
from tt.data.prepare import prepare
from tt.data.prepared_folder import PreparedCorpus, PrepareRequest
from tt.data.tokenizer import vocabulary_sizes
from tt.model.checkpoint import is_model_folder


def check_prepared_folder(folder: Path, option: str, out: Path | None = None) -> None:
    """A folder for prepared data must not be a model's: its tokenizer.model would be
    overwritten, and `tt train` holds the lock of its own --out (preparing there would wait
    for it forever)."""
    if out is not None and folder.resolve() == out.resolve():
        raise UserError(f"{option} {folder}: is --out itself; leave --prepared out (the prepared data then goes to OUT/prepared) or give another folder")
    if is_model_folder(folder):
        raise UserError(f"{option} {folder}: holds a model; prepared data needs a folder of its own")


def run_prepare(options: dict[str, Any], folder: Path, console: Console) -> PreparedCorpus:
    train_spec, dev_spec = corpus_specs(options)
    if train_spec is None:
        raise UserError("give a corpus file, or --src and --tgt")
    check_prepared_folder(folder, "--out")
    check_dev_size(options)
    configs = build_configs(options, preset_configs(options.get("preset")))
    request = PrepareRequest(
        train_spec, dev_spec, configs.cleaning, configs.tokenizer, configs.train.seed, options.get("dev_size")
    )
    with PreparationProgress(console) as progress:
        data = prepare(request, folder, progress)
    return data


def prepared_line(data: PreparedCorpus) -> str:
    verb = "reusing" if data.reused else "prepared"
    report = data.report
    return (
        f"{verb} {data.folder}: {data.train_pairs:,} train pairs, {len(data.dev):,} dev pairs "
        f"({report.read:,} read, {report.read - report.kept:,} dropped by cleaning), "
        f"vocabulary {vocabulary_sizes(data.tokenizer.src_vocab_size, data.tokenizer.tgt_vocab_size)}"
    )
