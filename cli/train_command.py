"""`tt train`: prepared corpus (`tt.data.prepare`) → Transformer → training loop.

The options are checked before anything is written. After that, the lock creates OUT (if
it is new) and preparation writes OUT/prepared (or --prepared), where a corpus's files,
columns and encodings are read. A new run that fails before its first checkpoint removes
OUT/prepared and OUT again only if it created OUT; a --prepared folder, or OUT/prepared
in an OUT that existed, is kept for the next run to reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, replace
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import torch
import typer
from rich.console import Console

from tt.cli.interrupts import Interrupted, interrupt_immediately, stop_after_step
from tt.cli.prepare_command import check_prepared_folder
from tt.cli.options import MODEL_OPTIONS, RunConfigs, absolute, build_configs, check_dev_size, corpus_specs, record_of, resume_configs
from tt.cli.presets import DEFAULT_EPOCHS, PRESET_REASON, default_preset, demo_configs, preset_configs
from tt.cli.progress import PreparationProgress, TrainingProgress
from tt.cli.train_report import done_message, starting_message, stopped_message, summary_record, summary_table
from tt.data.clean import CleaningConfig
from tt.data.corpus import CorpusSpec
from tt.data.errors import UserError
from tt.data.prepared_folder import PreparedCorpus, PrepareRequest
from tt.data.tokenizer import TokenizerConfig
from tt.model.checkpoint import STATE_TENSORS, is_model_folder, load_model_folder
from tt.model.model_record import CONFIG, read_json
from tt.model.marian_folder import is_marian_folder
from tt.model.run_folder import FolderLock
from tt.model.configs import config_from_dict
from tt.model.device import resolve_device
from tt.model.distributed import Cluster, join_cluster, leave_cluster
from tt.model.probes import DEMO_PROBE, Probe, gather_probes, recorded_probes
from tt.model.run import build_trainer, check_same_corpus, new_model, prepare_everywhere
from tt.model.train import TrainConfig
from tt.model.transformer import Dropout, ModelConfig

def run_train(options: dict[str, Any], resume: bool, overwrite: bool, console: Console) -> None:
    command_start = time.monotonic()
    if resume and overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it: choose one")
    check_dev_size(options)
    out = Path(options.get("out") or "tt-model")
    check_writable(out)
    if options.get("prepared"):
        check_prepared_folder(Path(options["prepared"]), "--prepared", out)
    # Under torchrun every process runs this command; they join one group before any work.
    cluster = join_cluster(resolve_device(_device_name(options, out, resume)).type)
    if not cluster.is_main:
        console = Console(quiet=True)  # rank 0 speaks for all
    together = False  # did every process reach the end at the same point?
    try:
        try:
            with interrupt_immediately(), FolderLock(out, enabled=cluster.is_main) as lock:  # until the loop starts, signals simply stop
                if resume:
                    _resume(out, options, command_start, console, lock, cluster)
                else:
                    try:
                        _start(out, options, overwrite, command_start, console, lock, cluster)
                    except BaseException:
                        _forget_prepared(out, lock)
                        raise
            together = True
        except typer.Exit:
            together = True  # a stop all processes agreed on (Ctrl-C, SIGTERM)
            raise
    except (UserError, typer.Exit, KeyboardInterrupt) as err:
        if cluster.is_main:
            raise
        # The same error on every process: rank 0 reports it; the others leave with its exit code.
        raise typer.Exit(getattr(err, "exit_code", 130 if isinstance(err, KeyboardInterrupt) else 1)) from None
    finally:
        leave_cluster(synchronize=together)


def _device_name(options: dict[str, Any], out: Path, resume: bool) -> str:
    if options.get("device") is not None or not resume:
        return options.get("device") or "auto"
    try:
        return str(json.loads((out / CONFIG).read_text(encoding="utf-8"))["train"].get("device", "auto"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "auto"  # _resume reports what is wrong with the folder


def check_writable(out: Path) -> None:
    """Fail before hours of work, not at the first save: is --out a folder we can write?"""
    existing = out
    while not existing.exists():  # the nearest part of the path that exists
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {existing} is not writable")


def _start(
    out: Path, options: dict[str, Any], overwrite: bool, command_start: float, console: Console, lock: FolderLock, cluster: Cluster
) -> None:
    if is_model_folder(out) and not overwrite:
        raise UserError(f"{out}: already holds a model; continue it with --resume or replace it with --overwrite")

    train_spec, dev_spec = corpus_specs(options)
    demo = train_spec is None
    if demo and dev_spec is not None:
        raise UserError("--dev needs a training corpus too (without one, tt trains the built-in demo)")
    if demo and options.get("prepared"):
        raise UserError("--prepared needs the corpus it was prepared from, given as to `tt prepare` (without one, tt trains the built-in demo)")
    preset = options.get("preset")
    chosen_by_default = not demo and preset is None
    if chosen_by_default:
        preset = default_preset(options.get("device"))
    base = demo_configs() if demo else preset_configs(preset)
    configs = build_configs(options, base)
    # A malformed --probe fails here, before any work; one longer than the model's positions
    # only once the tokenizer exists (ProbeSet, in _train).
    probes = _probes(options, demo)
    if not demo and configs.train.max_steps is None and configs.train.max_epochs is None and configs.train.max_time is None:
        configs.train.max_epochs = DEFAULT_EPOCHS
    init_from = Path(options["init_from"]) if options.get("init_from") else None
    if init_from is not None and is_marian_folder(init_from):
        raise UserError(f"--init-from {init_from}: a Hugging Face Marian model; fine-tuning starts from tt model folders only")
    if init_from is not None and not is_model_folder(init_from):
        raise UserError(f"--init-from {init_from}: not a tt model folder")

    tokenizer = None
    if init_from is not None:
        model, tokenizer, _ = load_model_folder(init_from)
        configs.model = fine_tuned_config(model, init_from, options)
    lock.acquire()  # creates the folder: nothing before this point writes anything
    if is_model_folder(out) and not overwrite:  # another run may have finished here while we checked
        raise UserError(f"{out}: already holds a model; continue it with --resume or replace it with --overwrite")
    with _demo_path() as demo_file:
        if demo:
            train_spec = CorpusSpec(path=str(demo_file))
        request = PrepareRequest(
            train_spec, dev_spec, configs.cleaning, configs.tokenizer, configs.train.seed, options.get("dev_size"), tokenizer
        )
        data = _prepare(request, prepared_folder(options, out), cluster, configs.train.device, console)
    if init_from is None:
        model = new_model(configs.model, data.tokenizer, configs.train.seed)
        configs.model = model.config
    console.print(summary_table(data, model, automatic_dev=dev_spec is None and options.get("dev_size") is None))
    if chosen_by_default:
        console.print(f"preset {preset}: the default for training {PRESET_REASON[preset]} (--preset to choose)")
    record = {
        "preset": None if demo else preset,
        "corpus": None if demo else asdict(absolute(train_spec)),
        "init_from": str(init_from.resolve()) if init_from is not None else None,
        "prepared": str(Path(options["prepared"]).resolve()) if options.get("prepared") else None,  # --resume reads it there
        "demo": demo,
        "dev": asdict(absolute(dev_spec)) if dev_spec else None,
        "dev_size": len(data.dev),
        "probes": [[p.source, p.reference] for p in probes],
        **record_of(configs),
        "summary": summary_record(data, model),
        "data_key": data.made_from,  # the sources' bytes (SHA-256) and layout: --resume refuses others
    }
    _train(model, data, configs, out, record, command_start, console, None, cluster)


def fine_tuned_config(model, init_from: Path, options: dict[str, Any]) -> ModelConfig:
    """The starting model's shape and vocabulary, which fine-tuning keeps: an option that would
    change them is refused, not ignored. Dropout is a fine-tuning choice: --dropout applies."""
    config = model.config
    fixed = [name for name, field in MODEL_OPTIONS.items() if name != "dropout" and options.get(name) is not None
             and options[name] != getattr(config, field)]
    fixed += [name for name in ("vocab_size", "src_vocab_size", "tgt_vocab_size", "separate_vocab") if options.get(name) is not None]
    if fixed:
        names = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise UserError(f"--init-from {init_from}: fine-tuning keeps that model's shape and vocabulary; leave out {names}")
    if options.get("dropout") is not None:
        config = model.config = replace(config, dropout=options["dropout"])
        for module in model.modules():
            if isinstance(module, Dropout):
                module.p = config.dropout
    return config


def _probes(options: dict[str, Any], demo: bool, recorded: list[Probe] | None = None) -> list[Probe]:
    """--probe and --probe-file; else the recorded ones (--resume); else the demo's one."""
    if options.get("probe") or options.get("probe_file"):
        return gather_probes(options.get("probe"), options.get("probe_file"))
    if recorded is not None:
        return recorded
    return [Probe(*DEMO_PROBE)] if demo else []



def _forget_prepared(out: Path, lock: FolderLock) -> None:
    """A new run that saved nothing leaves no folder behind: its prepared data goes too."""
    if lock.created_folder and (out / "prepared").is_dir() and not is_model_folder(out):
        shutil.rmtree(out / "prepared", ignore_errors=True)


def prepared_folder(options: dict[str, Any], out: Path, recorded: Any = None) -> Path:
    """Where the token shards live: --prepared, else (--resume) the folder the run used, else beside the run."""
    if options.get("prepared"):
        return Path(options["prepared"])
    return Path(recorded) if isinstance(recorded, str) else out / "prepared"


def _prepare(request: PrepareRequest, folder: Path, cluster: Cluster, device: str, console: Console) -> PreparedCorpus:
    with PreparationProgress(console) as progress:
        data = prepare_everywhere(request, folder, cluster, device, progress)
    if data.reused:
        console.print(f"reusing the prepared data in {folder} ({data.train_pairs:,} pairs)")
    return data


def _train(
    model, data: PreparedCorpus, configs: RunConfigs, out, record, command_start, console, resume_notes: list[str] | None, cluster: Cluster
) -> None:
    """`resume_notes`: None for a new run; on --resume, what the changed options changed."""
    def save_record() -> dict:
        return {**record, **record_of(configs), "step": trainer.step}

    if configs.train.threads is not None:  # else torch's choice
        torch.set_num_threads(configs.train.threads)

    trainer = build_trainer(
        model, data, configs.train, out, save_record, command_start, cluster,
        new_run=resume_notes is None, probe_pairs=record.get("probes") or [],
    )
    if resume_notes is not None:
        notes = resume_notes + trainer.restore()
        console.print(f"resuming {out} at step {trainer.step:,}" + (f"; changed: {'; '.join(notes)}" if notes else ""))
        reason = trainer.agreed_limit()
        if reason is not None:
            console.print(f"[green]nothing to do:[/] {out} already {reason} (step {trainer.step}); raise the limit to train on")
            return
    console.print(starting_message(trainer, cluster))
    try:
        with TrainingProgress(console) as progress, stop_after_step(trainer):
            reason = trainer.run(progress)
    except Interrupted as err:  # a second Ctrl-C: out at once, without saving
        kept = f"{out} keeps the checkpoint of step {trainer.saved_step}" if trainer.saved_step is not None else "no checkpoint was written"
        console.print(f"[red]aborted[/] at step {trainer.step}: {kept}")
        raise typer.Exit(err.exit_code) from None
    if trainer.stop_signal is not None:
        console.print(stopped_message(trainer, out))
        raise typer.Exit(128 + trainer.stop_signal)
    console.print(done_message(trainer, reason, out))


def _resume(out: Path, options: dict[str, Any], command_start: float, console: Console, lock: FolderLock, cluster: Cluster) -> None:
    if not (out / STATE_TENSORS).exists():
        owner = lock.held_elsewhere()  # a run still before its first checkpoint
        if owner is not None:
            raise UserError(f"{out}: another tt train (process {owner}) is writing this folder; it has no checkpoint to resume yet")
        raise UserError(f"{out}: no training run to resume here (expected {out / STATE_TENSORS})")
    record = read_json(out / CONFIG)
    where = f"{out / CONFIG}"
    recorded = RunConfigs(
        model=config_from_dict(ModelConfig, record.get("model"), f"{where}: model"),
        train=config_from_dict(TrainConfig, record.get("train"), f"{where}: train"),
        tokenizer=config_from_dict(TokenizerConfig, record.get("tokenizer"), f"{where}: tokenizer"),
        cleaning=config_from_dict(CleaningConfig, record.get("cleaning"), f"{where}: cleaning"),
    )
    configs, changes = resume_configs(options, recorded, record)
    record = {**record, "probes": [[p.source, p.reference] for p in _probes(options, False, recorded_probes(record.get("probes"), f"{where}: probes"))]}
    lock.acquire()
    if cluster.is_main:
        for stale in out.glob(".*.tmp-*"):  # half-written files of a run that was killed mid-save
            stale.unlink(missing_ok=True)
    model, tokenizer, _ = load_model_folder(out)
    with _demo_path() as demo_file:
        train_spec = CorpusSpec(path=str(demo_file)) if record.get("demo") else config_from_dict(CorpusSpec, record.get("corpus"), f"{where}: corpus")
        dev_spec = config_from_dict(CorpusSpec, record["dev"], f"{where}: dev") if record.get("dev") else None
        request = PrepareRequest(
            train_spec, dev_spec, configs.cleaning, configs.tokenizer, configs.train.seed, record.get("dev_size"), tokenizer,
            same_data_as=recorded_data_key(record, where),
        )
        data = _prepare(request, prepared_folder(options, out, record.get("prepared")), cluster, configs.train.device, console)
    check_same_corpus(data, (record.get("summary") or {}).get("train_pairs"), train_spec)
    model.train()
    _train(model, data, configs, out, record, command_start, console, changes, cluster)


def recorded_data_key(record: dict, where: str) -> dict | None:
    """The sources' bytes a run started from; None for a run recorded before tt kept them."""
    key = record.get("data_key")
    if key is None:
        return None  # check_same_corpus still compares the number of usable pairs
    if not isinstance(key, dict) or not {"train", "dev"} <= key.keys():
        raise UserError(f"{where}: data_key is not a record of the training data")
    return key


def _demo_path():
    return as_file(files("tt.data") / "demo.tsv")
