"""`tt train` options → the dataclass configs, from the command line and a `--config` file.

Precedence: an option given on the command line, else the same name in the `--config`
file (JSON or TOML; `d-model` and `d_model` both work), else the preset, else the
dataclass default. Options the user did not type arrive here as None, which is how we
tell "not given" from "given the default value".
"""

from __future__ import annotations

import inspect
import json
import math
import tomllib
import typing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tt.data.clean import CleaningConfig
from tt.data.corpus import CorpusSpec, read_bytes
from tt.data.errors import UserError
from tt.data.tokenizer import TokenizerConfig
from tt.model.configs import check_model_config, check_seed, has_type
from tt.model.decode_config import check_device, check_precision
from tt.cli.durations import parse_duration
from tt.model.train import DECAYS, TrainConfig
from tt.model.transformer import ModelConfig

# option name (as typed, dashes → underscores) → (config section, field)
MODEL_OPTIONS = {
    "layers": "n_layers", "d_model": "d_model", "heads": "n_heads", "ff": "d_ff",
    "dropout": "dropout", "pre_norm": "pre_norm", "residual": "residual",
}
TRAIN_OPTIONS = {
    "batch_tokens": "batch_tokens", "lr": "learning_rate", "warmup": "warmup_steps", "decay": "decay", "cooldown": "cooldown",
    "label_smoothing": "label_smoothing", "subword_alpha": "subword_alpha", "weight_decay": "weight_decay", "clip_norm": "clip_norm",
    "max_steps": "max_steps", "max_epochs": "max_epochs", "max_time": "max_time",
    "dev_every": "dev_every", "save_every": "save_every", "seed": "seed", "precision": "precision",
    "patience": "patience", "dev_bleu_sentences": "dev_bleu_sentences", "average_last": "average_last",
    "device": "device", "accum": "accum_steps", "log_every": "log_every", "threads": "threads",
}
TOKENIZER_OPTIONS = {
    "vocab_size": "vocab_size", "separate_vocab": "joint", "src_vocab_size": "src_vocab_size", "tgt_vocab_size": "tgt_vocab_size",
}
CLEANING_OPTIONS = {"max_chars": "max_chars", "max_ratio": "max_ratio"}
CORPUS_OPTIONS = ("corpus", "src", "tgt", "format", "src_col", "tgt_col", "dev", "dev_src", "dev_tgt", "dev_size")
RUN_OPTIONS = ("out", "init_from", "preset", "probe", "probe_file", "prepared")
ALL_OPTIONS = (
    set(MODEL_OPTIONS) | set(TRAIN_OPTIONS) | set(TOKENIZER_OPTIONS) | set(CLEANING_OPTIONS)
    | set(CORPUS_OPTIONS) | set(RUN_OPTIONS)
)
LIMIT_OPTIONS = ("max_steps", "max_epochs", "max_time", "dev_every", "save_every", "threads", "patience")


@dataclass
class RunConfigs:
    model: ModelConfig
    train: TrainConfig
    tokenizer: TokenizerConfig
    cleaning: CleaningConfig


def read_config_file(path: Path, kinds: dict[str, type] | None = None) -> dict[str, Any]:
    """A flat table of option names → values, each of the type its option takes (`kinds`)."""
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
    if path.suffix.lower() not in (".toml", ".json"):
        raise UserError(f"{path}: a --config file is TOML (.toml) or JSON (.json), told apart by its extension")
    try:
        values = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot parse ({err})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a table of option names and values")
    options = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in ALL_OPTIONS:
            raise UserError(f"{path}: unknown option {key!r}")
        kind = (kinds or {}).get(name)
        if kind is not None and not _is_a(value, kind):
            raise UserError(f"{path}: {key} must be {_KIND_NAMES[kind]}, not {json.dumps(value, default=str)}")
        options[name] = str(value) if kind is Path else value
    return options


class Duration:
    """A duration in a config file: text such as "15m", or a number of seconds."""


# What the file must hold for an option of each type: TOML and JSON have all of these.
_KIND_NAMES = {
    bool: "true or false", int: "a whole number", float: "a number", str: "text", Path: "a path (text)",
    Duration: 'a duration ("15m") or a number of seconds',
    list[str]: 'a list of texts (["SOURCE\\tREFERENCE"])',
}


def _is_a(value: Any, kind: type) -> bool:
    """The rules config.json is read by (true is not a number, 1 is a float), for a file's option."""
    if typing.get_origin(kind) is list:  # a repeatable option (--probe): a list of its item type
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_is_a(v, item) for v in value)
    hint = {Path: str, Duration: str | float}.get(kind, kind)
    return has_type(value, hint)


def option_kinds(command) -> dict[str, type]:
    """Option name → its type, read from a typer command's signature (Optional[int] → int)."""
    kinds = {}
    for name, hint in typing.get_type_hints(command).items():
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
        kinds[name] = args[0]
    # Durations: "15m" or seconds.
    return {**kinds, "max_time": Duration, "save_every": Duration}


def options_given(command, values: dict[str, Any], leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The command's own parameters from `values` (its locals()): only names in its signature
    count as options, so a helper variable inside the command never becomes one."""
    names = inspect.signature(command).parameters
    return {name: values[name] for name in names if name not in leave_out}


def merge(command_line: dict[str, Any], config_file: Path | None, kinds: dict[str, type] | None = None) -> dict[str, Any]:
    """Command-line options that were given win over the file's."""
    given = {k: v for k, v in command_line.items() if v is not None}
    from_file = read_config_file(config_file, kinds) if config_file else {}
    return {**from_file, **given}


def durations(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in ("max_time", "save_every"):
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = parse_duration(value)
            except ValueError as err:
                raise UserError(f"--{key.replace('_', '-')}: {err}") from None
    return out


def build_configs(options: dict[str, Any], base: RunConfigs) -> RunConfigs:
    """Apply the options onto `base` (defaults, a preset, or a recorded run)."""
    options = durations(options)

    def pick(table: dict[str, str]) -> dict[str, Any]:
        return {field: options[name] for name, field in table.items() if options.get(name) is not None}

    tokenizer_values = pick(TOKENIZER_OPTIONS)
    if "joint" in tokenizer_values:
        tokenizer_values["joint"] = not tokenizer_values["joint"]  # the option says "separate"
    configs = RunConfigs(
        model=replace(base.model, **pick(MODEL_OPTIONS)),
        train=replace(base.train, **pick(TRAIN_OPTIONS)),
        tokenizer=replace(base.tokenizer, **tokenizer_values),
        cleaning=replace(base.cleaning, **pick(CLEANING_OPTIONS)),
    )
    validate(configs)
    return configs


def absolute(spec: CorpusSpec | None) -> CorpusSpec | None:
    """The spec with absolute paths: --resume finds the corpus from any working folder."""
    if spec is None:
        return None
    resolve = lambda name: str(Path(name).resolve()) if name else None  # noqa: E731
    return replace(spec, path=resolve(spec.path), src_path=resolve(spec.src_path), tgt_path=resolve(spec.tgt_path))


def validate(configs: RunConfigs) -> None:
    t, k = configs.train, configs.tokenizer
    for option, size in (("--vocab-size", k.vocab_size), ("--src-vocab-size", k.src_vocab_size), ("--tgt-vocab-size", k.tgt_vocab_size)):
        if size is not None and size < 300:  # before the shape checker's wider limits, so that 0 and 10 read alike
            raise UserError(f"{option} must be at least 300 (256 byte pieces live in it)")
    # The model's vocabulary sizes are the tokenizer's (--vocab-size): the shape checker
    # names --vocab-size for a size outside its limits.
    check_model_config(replace(
        configs.model, src_vocab_size=k.src_vocab_size or k.vocab_size, tgt_vocab_size=k.tgt_vocab_size or k.vocab_size,
        tie_embeddings=False,  # tt ties them where the tokenizer turns out joint, whose sizes are equal
    ))
    check_seed(t.seed)
    check_precision(t.precision)
    check_device(t.device)
    checks = [
        (0 <= t.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (0 <= t.subword_alpha <= 1, "--subword-alpha must be between 0 (off) and 1"),
        (0 < t.learning_rate < math.inf, "--lr must be a positive number"),
        (0 <= t.weight_decay < math.inf, "--weight-decay must be a number, 0 or more"),
        (configs.cleaning.max_chars >= 1, "--max-chars must be at least 1"),
        (configs.cleaning.max_ratio >= 1, "--max-ratio must be 1 or more (the longer side over the shorter)"),
        (t.batch_tokens >= 16, "--batch-tokens must be at least 16"),
        (t.warmup_steps >= 0, "--warmup must not be negative"),
        (0 <= t.cooldown <= 1, "--cooldown must be between 0 and 1 (a share of the run)"),
        (t.decay in DECAYS, f"--decay must be one of {', '.join(DECAYS)}"),
        (t.max_steps is None or t.max_steps >= 0, "--max-steps must not be negative"),
        (t.max_epochs is None or 0 < t.max_epochs < math.inf, "--max-epochs must be a positive number"),
        (t.max_time is None or t.max_time > 0, "--max-time must be positive"),
        (1 <= t.accum_steps <= 1024, "--accum must be between 1 and 1024"),
        (t.threads is None or 1 <= t.threads <= 1024, "--threads must be between 1 and 1024"),
        (t.log_every >= 1, "--log-every must be at least 1"),
        (k.joint is not True or (k.src_vocab_size, k.tgt_vocab_size) == (None, None),
         "--src-vocab-size and --tgt-vocab-size size separate vocabularies, not a --joint-vocab"),
        (t.dev_every >= 1, "--dev-every must be at least 1"),
        (t.save_every > 0, "--save-every must be positive"),
        (t.patience is None or t.patience >= 1, "--patience must be at least 1"),
        (t.patience is None or t.dev_bleu_sentences > 0, "--patience waits for a better dev BLEU: it needs --dev-bleu-sentences above 0"),
        (t.average_last == 0 or t.dev_bleu_sentences > 0, "--average-last keeps the mean if its dev BLEU is higher: it needs --dev-bleu-sentences above 0"),
        (t.average_last >= 0, "--average-last must not be negative"),
        (t.dev_bleu_sentences >= 0, "--dev-bleu-sentences must not be negative"),
        (t.clip_norm > 0, "--clip-norm must be positive"),  # inf: no clipping; nan fails every comparison
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def check_dev_size(options: dict[str, Any]) -> None:
    """--dev-size, for `tt train` and `tt prepare` alike (None: the automatic size)."""
    if options.get("dev_size") is not None and options["dev_size"] < 0:
        raise UserError("--dev-size must not be negative")


def corpus_specs(options: dict[str, Any]) -> tuple[CorpusSpec | None, CorpusSpec | None]:
    """The training corpus and the dev set, as given (None where not given)."""
    common = {
        "format": options.get("format"),
        "src_col": 1 if options.get("src_col") is None else options["src_col"],
        "tgt_col": 2 if options.get("tgt_col") is None else options["tgt_col"],
    }

    def text(key: str) -> str | None:
        return str(options[key]) if options.get(key) else None

    train = None
    if text("corpus") or text("src") or text("tgt"):
        train = CorpusSpec(path=text("corpus"), src_path=text("src"), tgt_path=text("tgt"), **common)
    dev = None
    if text("dev") or text("dev_src") or text("dev_tgt"):
        dev_format = common["format"] if common["format"] != "text" else None
        dev = CorpusSpec(path=text("dev"), src_path=text("dev_src"), tgt_path=text("dev_tgt"), **{**common, "format": dev_format})
    return train, dev


def record_of(configs: RunConfigs) -> dict[str, Any]:
    return {
        "train": asdict(configs.train),
        "tokenizer": asdict(configs.tokenizer),
        "cleaning": asdict(configs.cleaning),
    }


# ---- --resume: which options may change

# These change how long and how fast a run trains, not what it is: on --resume they take
# effect (and are reported). Everything else describes the model, its vocabulary or its
# data; a value different from the recorded one is refused rather than silently ignored.
RESUMABLE_OPTIONS = LIMIT_OPTIONS + (
    "lr", "warmup", "decay", "cooldown", "batch_tokens", "label_smoothing", "subword_alpha", "clip_norm", "weight_decay", "precision",
    "dev_bleu_sentences", "average_last", "device", "accum", "log_every", "probe", "probe_file", "prepared",
)
_SPEC_FIELDS = {  # corpus option → (record section, CorpusSpec field)
    "corpus": ("corpus", "path"), "src": ("corpus", "src_path"), "tgt": ("corpus", "tgt_path"),
    "format": ("corpus", "format"), "src_col": ("corpus", "src_col"), "tgt_col": ("corpus", "tgt_col"),
    "dev": ("dev", "path"), "dev_src": ("dev", "src_path"), "dev_tgt": ("dev", "tgt_path"),
}


def resume_configs(options: dict[str, Any], recorded: RunConfigs, record: dict) -> tuple[RunConfigs, list[str]]:
    """The recorded configs with the allowed changes applied, and a note per change.

    Raises UserError naming every option that may not change on --resume.
    """
    refused = [name for name, value in options.items() if value is not None and _differs(name, value, recorded, record)]
    if refused:
        names = ", ".join("the corpus file" if name == "corpus" else "--" + name.replace("_", "-") for name in sorted(refused))
        raise UserError(
            f"--resume cannot change {names}: the model shape, vocabulary, data and seed are fixed for a run "
            "(start a new one with --overwrite or another --out)"
        )
    configs = build_configs({k: v for k, v in options.items() if k in RESUMABLE_OPTIONS}, recorded)
    changes = []
    for name, field in TRAIN_OPTIONS.items():
        before, after = getattr(recorded.train, field), getattr(configs.train, field)
        if name in RESUMABLE_OPTIONS and before != after:
            changes.append(f"--{name.replace('_', '-')} {_show(before)} → {_show(after)}")
    return configs, changes


def _differs(name: str, value: Any, recorded: RunConfigs, record: dict) -> bool:
    if name in RESUMABLE_OPTIONS or name == "out":
        return False
    if name in MODEL_OPTIONS:
        return value != getattr(recorded.model, MODEL_OPTIONS[name])
    if name in TRAIN_OPTIONS:
        return value != getattr(recorded.train, TRAIN_OPTIONS[name])
    if name in ("vocab_size", "src_vocab_size", "tgt_vocab_size"):
        return value != getattr(recorded.tokenizer, name)
    if name == "separate_vocab":  # a run that let tt choose holds no choice to compare with
        return recorded.tokenizer.joint is None or value == recorded.tokenizer.joint
    if name in CLEANING_OPTIONS:
        return value != getattr(recorded.cleaning, CLEANING_OPTIONS[name])
    if name == "dev_size":
        return record.get("dev") is not None or value != record.get("dev_size")
    if name in _SPEC_FIELDS:
        section, field = _SPEC_FIELDS[name]
        spec = record.get(section) or {}
        if field.endswith("path"):
            return spec.get(field) is None or Path(str(value)).resolve() != Path(spec[field]).resolve()
        return value != spec.get(field)
    if name == "preset":  # the same preset as recorded (e.g. from the same --config file) is no change
        return value != record.get("preset")
    if name == "init_from":  # the first command plus --resume: the same starting model is no change
        return record.get("init_from") is None or Path(str(value)).resolve() != Path(record["init_from"]).resolve()
    return True


def _show(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
