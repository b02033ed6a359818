"""Bad input, one table per command: exit 1, one `error:` line naming file (and line), nothing written.

Every case runs in its own `tmp_path`, which is also the working directory, and the whole
folder is compared before and after: a refused command must leave no model folder, no
`--output` file and no `.tmp` leftovers anywhere, and must not touch an existing folder.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from conftest import TINY_MODEL_OPTIONS, tiny_pairs
from tt.cli.main import app

runner = CliRunner()

GOOD_TSV = "".join(f"{src}\t{tgt}\n" for src, tgt in tiny_pairs())
TRAINED = object()  # in a `files` table: a copy of the session's trained model folder
FOLDER = object()  # in a `files` table: an empty folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` → a digest of its bytes ("folder" for folders)."""
    listing = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        listing[key] = "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return listing


def assert_refused(result, before: dict[str, str], tmp_path: Path, fragments, exit_code: int = 1) -> str:
    """The contract of every case below; returns the error line."""
    # CliRunner swallows an uncaught exception (exit code 1, no traceback in the output), so
    # "no traceback" means: no exception but SystemExit (typer.Exit or a usage error) got out.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail("uncaught exception:\n" + "".join(traceback.format_exception(*result.exc_info)))
    for text in (result.output, result.stdout, result.stderr):
        assert "Traceback" not in text, text
    assert result.exit_code == exit_code, result.output
    if exit_code == 2:
        # A usage error keeps typer's convention (the issue asks for it): usage text, then the
        # complaint in a box. Reduce it to the line that names the problem.
        assert result.stderr.startswith("Usage: "), result.stderr  # CliRunner names the program "root"
        lines = [line.strip("│ ") for line in result.stderr.splitlines() if "No such option" in line]
        assert len(lines) == 1, result.stderr
        line = "error: " + lines[0]
    else:
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        line = lines[0]
    assert line.startswith("error:"), line
    for fragment in fragments:
        if isinstance(fragment, tuple):  # any one of these words will do
            assert any(word in line for word in fragment), line
        else:
            assert fragment in line, line
    leftovers = [path for path in tmp_path.rglob("*") if ".tmp" in path.name]
    assert not leftovers, leftovers
    assert snapshot(tmp_path) == before  # no new file or folder, none changed
    return line


# ---- tt train CORPUS --out OUT


@dataclass
class TrainCase:
    args: list[str]  # "{tmp}" stands for tmp_path
    fragments: list  # what the error line must contain ("{tmp}" too); a tuple: any one of
    files: dict = field(default_factory=dict)  # name → text, bytes, FOLDER or TRAINED
    tiny: bool = True  # append the tiny model options and --max-steps 2
    exit_code: int = 1


# Options a case adds come after these, so they win (the last of a repeated option counts).
TINY = [*TINY_MODEL_OPTIONS, "--max-steps", "2"]
CORPUS = {"corpus.tsv": GOOD_TSV}
OUT = ["--out", "{tmp}/out"]

TRAIN_CASES = {
    "unknown-option": TrainCase(["{tmp}/corpus.tsv", *OUT, "--no-such-option"], ["--no-such-option"], CORPUS, exit_code=2),
    "missing-corpus": TrainCase(["{tmp}/nope.tsv", *OUT], ["{tmp}/nope.tsv"]),
    "empty-corpus": TrainCase(["{tmp}/empty.tsv", *OUT], ["{tmp}/empty.tsv"], {"empty.tsv": ""}),
    "blank-lines": TrainCase(["{tmp}/blank.tsv", *OUT], ["{tmp}/blank.tsv"], {"blank.tsv": "\n\n \n\n"}),
    # b.en ends after line 2: its line 3 is the first one missing.
    "misaligned": TrainCase(
        ["--src", "{tmp}/a.zh", "--tgt", "{tmp}/b.en", *OUT], ["{tmp}/b.en:3"],
        {"a.zh": "一\n二\n三\n", "b.en": "one\ntwo\n"},
    ),
    "missing-column": TrainCase(
        ["{tmp}/two.tsv", *OUT, "--tgt-col", "3"], ["{tmp}/two.tsv:1"], {"two.tsv": "你好\tHello\n世界\tWorld\n"},
    ),
    "invalid-utf8": TrainCase(
        ["{tmp}/bad.tsv", *OUT], ["{tmp}/bad.tsv:2"], {"bad.tsv": "你好\tHello\n".encode() + b"\xff\xfe\tbad\n"},
    ),
    "jsonl-list": TrainCase(
        ["{tmp}/list.jsonl", *OUT], ["{tmp}/list.jsonl:2"], {"list.jsonl": '{"src": "你好", "tgt": "Hello"}\n["你好", "Hello"]\n'},
    ),
    "jsonl-no-tgt": TrainCase(
        ["{tmp}/notgt.jsonl", *OUT], ["{tmp}/notgt.jsonl:2", "tgt"],
        {"notgt.jsonl": '{"src": "你好", "tgt": "Hello"}\n{"src": "世界"}\n'},
    ),
    "jsonl-not-json": TrainCase(
        ["{tmp}/broken.jsonl", *OUT], ["{tmp}/broken.jsonl:2"], {"broken.jsonl": '{"src": "你好", "tgt": "Hello"}\n{src: oops\n'},
    ),
    "src-col-0": TrainCase(["{tmp}/corpus.tsv", *OUT, "--src-col", "0"], ["--src-col"], CORPUS),
    "dev-src-alone": TrainCase(["{tmp}/corpus.tsv", *OUT, "--dev-src", "{tmp}/corpus.tsv"], ["needs both --dev-src and --dev-tgt"], CORPUS),
    "corpus-a-device": TrainCase(["/dev/null", *OUT, "--format", "tsv"], ["/dev/null: a pipe or a device, not a file"], {}),
    "gzip-corpus": TrainCase(["{tmp}/c.tsv.gz", *OUT, "--format", "tsv"], ["{tmp}/c.tsv.gz", "gzip"], {"c.tsv.gz": gzip.compress("你好\tHello\n".encode())}),
    "layers-0": TrainCase(["{tmp}/corpus.tsv", *OUT, "--layers", "0"], ["--layers"], CORPUS),
    "heads-3-of-16": TrainCase(["{tmp}/corpus.tsv", *OUT, "--heads", "3", "--d-model", "16"], ["--heads"], CORPUS),
    "max-steps-negative": TrainCase(["{tmp}/corpus.tsv", *OUT, "--max-steps", "-1"], ["--max-steps"], CORPUS),
    "max-time-soon": TrainCase(["{tmp}/corpus.tsv", *OUT, "--max-time", "soon"], ["--max-time"], CORPUS),
    # A size limit, checked before anything is allocated (a 10⁹-wide model would need terabytes).
    "d-model-huge": TrainCase(["{tmp}/corpus.tsv", *OUT, "--d-model", "1000000000"], ["--d-model", "limit"], CORPUS),
    # --resume takes its options from the folder; the tiny ones would count as changes.
    "resume-empty-folder": TrainCase(["--resume", "--out", "{tmp}/empty"], ["{tmp}/empty"], {"empty": FOLDER}, tiny=False),
    "resume-and-overwrite": TrainCase(
        ["--resume", "--overwrite", "--out", "{tmp}/trained"], ["--resume", "--overwrite"], {"trained": TRAINED}, tiny=False,
    ),
    "resume-no-folder": TrainCase(["--resume", "--out", "{tmp}/nowhere"], ["{tmp}/nowhere"], tiny=False),
    # We run as root, so a read-only folder would still be writable: a path through a
    # regular file is the unwritable --out we can make.
    "out-under-a-file": TrainCase(
        ["{tmp}/corpus.tsv", "--out", "{tmp}/afile/model"], ["{tmp}/afile"], {**CORPUS, "afile": "a file, not a folder\n"},
    ),
    "out-name-too-long": TrainCase(["{tmp}/corpus.tsv", "--out", "{tmp}/" + "x" * 300], ["File name too long"], CORPUS),
    "config-not-json": TrainCase(
        ["{tmp}/corpus.tsv", *OUT, "--config", "{tmp}/run.json"], ["{tmp}/run.json"], {**CORPUS, "run.json": '{"layers": 2,'},
    ),
    "config-unknown-key": TrainCase(
        ["{tmp}/corpus.tsv", *OUT, "--config", "{tmp}/run.json"], ["{tmp}/run.json", "layerz"], {**CORPUS, "run.json": '{"layerz": 2}'},
    ),
    # A config file's values have the types of the options they stand for.
    **{
        f"config-{name}": TrainCase(
            ["{tmp}/corpus.tsv", *OUT, "--config", "{tmp}/run.toml"], ["{tmp}/run.toml", key, must],
            {**CORPUS, "run.toml": f"{key} = {value}\n"},
        )
        for name, key, value, must in [
            ("bool-as-text", "pre-norm", '"false"', "true or false"),
            ("int-as-float", "layers", "1.5", "whole number"),
            ("int-as-text", "threads", '"4"', "whole number"),
            ("int-as-bool", "d-model", "true", "whole number"),
            ("float-as-text", "lr", '"fast"', "a number"),
            ("path-as-number", "init-from", "3", "path"),
            ("duration-as-list", "max-time", "[1, 2]", "duration"),
            ("probe-as-text", "probe", '"你好\\tHello"', "a list of texts"),
            ("probe-of-numbers", "probe", "[1]", "a list of texts"),
        ]
    },
    "config-yaml": TrainCase(
        ["{tmp}/corpus.tsv", *OUT, "--config", "{tmp}/run.yaml"], ["{tmp}/run.yaml", "TOML (.toml) or JSON (.json)"], {**CORPUS, "run.yaml": "layers: 2\n"},
    ),
    "config-is-a-folder": TrainCase(["{tmp}/corpus.tsv", *OUT, "--config", "{tmp}/conf"], ["{tmp}/conf", "folder"], {**CORPUS, "conf": FOLDER}),
    "config-not-utf8": TrainCase(
        ["{tmp}/corpus.tsv", *OUT, "--config", "{tmp}/run.toml"], ["{tmp}/run.toml", "UTF-8"], {**CORPUS, "run.toml": b"layers = 2 # \xff\n"},
    ),
    "config-weight-decay-negative": TrainCase(
        ["{tmp}/corpus.tsv", *OUT, "--config", "{tmp}/run.toml"], ["--weight-decay"], {**CORPUS, "run.toml": "weight_decay = -0.1\n"},
    ),
    # Numbers in range for their type, out of range for their meaning.
    **{
        f"{option.strip('-')}-{label}": TrainCase(["{tmp}/corpus.tsv", *OUT, option, value], [option], CORPUS)
        for option, value, label in [
            ("--lr", "inf", "inf"), ("--lr", "nan", "nan"), ("--max-epochs", "inf", "inf"), ("--max-ratio", "-1", "negative"),
            ("--max-ratio", "nan", "nan"), ("--dev-size", "-5", "negative"), ("--seed", "-1", "negative"),
            ("--seed", "4294967296", "huge"), ("--max-chars", "0", "zero"),
        ]
    },
    # The shape checker's limit on the vocabulary names the option that sets it.
    "patience-without-bleu": TrainCase(["{tmp}/corpus.tsv", *OUT, "--patience", "2", "--dev-bleu-sentences", "0"], ["--patience", "--dev-bleu-sentences"], CORPUS),
    "average-without-bleu": TrainCase(["{tmp}/corpus.tsv", *OUT, "--average-last", "2", "--dev-bleu-sentences", "0"], ["--average-last", "--dev-bleu-sentences"], CORPUS),
    "vocab-size-0": TrainCase(["{tmp}/corpus.tsv", *OUT, "--vocab-size", "0"], ["--vocab-size must be at least 300"], CORPUS),
    "tgt-vocab-size-10": TrainCase(["{tmp}/corpus.tsv", *OUT, "--tgt-vocab-size", "10"], ["--tgt-vocab-size must be at least 300"], CORPUS),
    "vocab-size-huge": TrainCase(["{tmp}/corpus.tsv", *OUT, "--vocab-size", "2000000"], ["--vocab-size", "limits"], CORPUS),
    # More held out than the corpus has sources: said before a tokenizer is trained on nothing.
    "dev-size-holds-out-everything": TrainCase(["{tmp}/corpus.tsv", *OUT, "--dev-size", "100"], ["--dev-size 100", "no pairs"], CORPUS),
    # --prepared OUT would wait forever for the lock this run holds on OUT.
    "prepared-is-out": TrainCase(["{tmp}/corpus.tsv", *OUT, "--prepared", "{tmp}/out"], ["--prepared", "--out"], CORPUS),
    "prepared-holds-a-model": TrainCase(
        ["{tmp}/corpus.tsv", *OUT, "--prepared", "{tmp}/trained"], ["--prepared {tmp}/trained", "model"], {**CORPUS, "trained": TRAINED},
    ),
    "init-from-marian": TrainCase(
        ["{tmp}/corpus.tsv", *OUT, "--init-from", "{tmp}/marian"], ["--init-from {tmp}/marian", "Marian"],
        {**CORPUS, "marian": FOLDER, "marian/config.json": '{"model_type": "marian"}', "marian/model.safetensors": "x"},
    ),
    # No --max-steps: the recorded limit is already reached, so a wrong success ends at once.
    "resume-changed-d-model": TrainCase(
        ["--resume", "--out", "{tmp}/trained", "--d-model", "32"], ["--d-model"], {"trained": TRAINED}, tiny=False,
    ),
}


def make_files(tmp_path: Path, files: dict, request) -> None:
    for name, content in files.items():
        path = tmp_path / name
        if content is TRAINED:
            shutil.copytree(request.getfixturevalue("trained_model"), path)
        elif content is FOLDER:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize("case", TRAIN_CASES.values(), ids=TRAIN_CASES.keys())
def test_train_refuses(case: TrainCase, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)  # a stray file in the working directory counts as written too
    make_files(tmp_path, case.files, request)
    before = snapshot(tmp_path)
    args = [arg.format(tmp=tmp_path) for arg in case.args]
    result = runner.invoke(app, ["train", *(TINY if case.tiny else []), *args])
    assert_refused(result, before, tmp_path, [f.format(tmp=tmp_path) if isinstance(f, str) else f for f in case.fragments], case.exit_code)
    assert not (tmp_path / "out").exists()


# ---- tt translate / score / eval --model DAMAGED


def rewrite_json(path: Path, change: Callable[[dict], None]) -> None:
    record = json.loads(path.read_text(encoding="utf-8"))
    change(record)
    path.write_text(json.dumps(record), encoding="utf-8")


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage_header_length(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"\xde\xad\xbe\xef\xde\xad\xbe\xef" + data[8:])  # the u64 length of the JSON header


def flip_last_bytes(path: Path) -> None:
    # The header is at the front; the last bytes are tensor data, which only the checksum guards.
    data = bytearray(path.read_bytes())
    for index in range(len(data) - 16, len(data) - 1, 5):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))


def set_model_key(key, value) -> Callable[[Path], None]:
    return lambda folder: rewrite_json(folder / "config.json", lambda record: record["model"].__setitem__(key, value))


def replace_with_folder(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()

    return damage


# name → (damage done to the copied model folder, what the error line must name)
DAMAGES = {
    "no-model-folder": (shutil.rmtree, ["{model}"]),
    "no-weights": (lambda folder: (folder / "model.safetensors").unlink(), ["model.safetensors"]),
    "weights-truncated": (lambda folder: truncate_half(folder / "model.safetensors"), ["{model}/model.safetensors"]),
    "weights-header-garbage": (lambda folder: garbage_header_length(folder / "model.safetensors"), ["{model}/model.safetensors"]),
    "weights-bytes-flipped": (
        lambda folder: flip_last_bytes(folder / "model.safetensors"), ["{model}/model.safetensors", ("damaged", "altered")],
    ),
    "config-not-json": (lambda folder: (folder / "config.json").write_text('{"model": {', encoding="utf-8"), ["{model}/config.json"]),
    "config-is-a-folder": (replace_with_folder("config.json"), ["{model}/config.json"]),
    "config-deeply-nested": (lambda folder: (folder / "config.json").write_text("[" * 100_000), ["{model}/config.json"]),
    "config-huge-number": (lambda folder: (folder / "config.json").write_text('{"step": ' + "9" * 5000 + "}"), ["{model}/config.json"]),
    "config-d-model-32": (set_model_key("d_model", 32), ["{model}", "config.json"]),
    "config-d-model-huge": (set_model_key("d_model", 1_000_000_000), ["{model}/config.json", "d_model"]),
    "config-layers-not-a-number": (set_model_key("n_layers", "three"), ["{model}/config.json", "n_layers"]),
    "config-unknown-key": (set_model_key("colour", "blue"), ["{model}/config.json", "colour"]),
    "no-tokenizer": (lambda folder: (folder / "tokenizer.model").unlink(), ["{model}", "tokenizer.model"]),
    "tokenizer-empty": (lambda folder: (folder / "tokenizer.model").write_bytes(b""), ["{model}/tokenizer.model", "empty"]),
    "config-heads-7": (set_model_key("n_heads", 7), ["{model}/config.json: model: d_model = ", "is not divisible by n_heads = 7"]),
    "tokenizer-garbage": (
        lambda folder: (folder / "tokenizer.model").write_bytes(b"\x00garbage\xff" * 50), ["{model}/tokenizer.model"],
    ),
}

# Each command given everything it needs but a working model; --output where it has one,
# so that "nothing written" covers it.
COMMANDS = {
    "translate": ["translate", "--model", "{model}", "--output", "{tmp}/out.txt", "我有三本书。"],
    "score": ["score", "--model", "{model}", "--src", "我有三本书。", "--ref", "I have three books."],
    "eval": ["eval", "{tmp}/test.tsv", "--model", "{model}", "--output", "{tmp}/out.txt"],
    "explain": ["explain", "--model", "{model}", "--src", "我有三本书。", "--ref", "I have three books."],
}


@pytest.mark.parametrize("damage", DAMAGES.keys())
@pytest.mark.parametrize("command", COMMANDS.keys())
def test_damaged_model_is_refused(command, damage, trained_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    (tmp_path / "test.tsv").write_text(GOOD_TSV, encoding="utf-8")
    spoil, fragments = DAMAGES[damage]
    spoil(model)
    before = snapshot(tmp_path)
    args = [arg.format(tmp=tmp_path, model=model) for arg in COMMANDS[command]]
    result = runner.invoke(app, args, env={"TT_MODEL": None})
    fragments = [f.format(model=model) if isinstance(f, str) else f for f in fragments]
    assert_refused(result, before, tmp_path, fragments)
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("train, fragment", [
    ("x", "train.label_smoothing is not a number in [0, 1)"),
    ({"label_smoothing": "abc"}, "train.label_smoothing is not a number in [0, 1)"),
    ({"label_smoothing": 5}, "train.label_smoothing is not a number in [0, 1)"),
])
def test_explain_names_a_damaged_training_record(train, fragment, trained_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    rewrite_json(model / "config.json", lambda record: record.__setitem__("train", train))
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["explain", "--model", str(model), "--src", "我有三本书。", "--ref", "I have three books."])
    assert_refused(result, before, tmp_path, [f"{model}/config.json", fragment, "--smoothing"])
    given = runner.invoke(app, ["explain", "--model", str(model), "--src", "我有三本书。", "--ref", "I have three books.", "--smoothing", "0.1"])
    assert given.exit_code == 0, given.output  # the option stands in for the damaged record


@pytest.mark.parametrize("damage", ["empty", "a-file"])
def test_tokenize_refuses_an_empty_tokenizer_or_a_file_as_the_model(damage, trained_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    if damage == "empty":
        (model / "tokenizer.model").write_bytes(b"")
        expected = [f"{model}/tokenizer.model", "empty file"]
    else:
        model = model / "config.json"
        expected = [f"{model}: not a folder"]
    before = snapshot(tmp_path)
    assert_refused(runner.invoke(app, ["tokenize", "--model", str(model), "你好"]), before, tmp_path, expected)


# ---- options out of range, with a working model: refused before any work


OPTION_CASES = {
    "temperature-nan": (["translate", "--sample", "--temperature", "nan", "你好"], ["--temperature"]),
    "temperature-inf": (["translate", "--sample", "--temperature", "inf", "你好"], ["--temperature"]),
    "temperature-zero": (["translate", "--sample", "--temperature", "0", "你好"], ["--temperature"]),
    "length-penalty-nan": (["translate", "--beam", "2", "--length-penalty", "nan", "你好"], ["--length-penalty"]),
    "length-penalty-minus-inf": (["translate", "--beam", "2", "--length-penalty", "-inf", "你好"], ["--length-penalty"]),
    "length-penalty-huge": (["eval", "{tmp}/test.tsv", "--beam", "2", "--length-penalty", "1e308"], ["--length-penalty"]),
    "sample-seed-negative": (["translate", "--sample", "--seed", "-1", "你好"], ["--seed"]),
    "sample-seed-huge": (["translate", "--sample", "--seed", "99999999999999999999", "你好"], ["--seed"]),
    "step-with-file": (["translate", "--step", "--file", "{tmp}/test.tsv"], ["--step", "--file"]),
    "step-with-output-and-json": (["translate", "--step", "--output", "{tmp}/out.txt", "--json", "你好"], ["--output", "--json"]),
    "translate-output-no-folder": (["translate", "--output", "{tmp}/nowhere/out.txt", "你好"], ["{tmp}/nowhere"]),
    "eval-output-a-folder": (["eval", "{tmp}/test.tsv", "--output", "{tmp}/afolder"], ["{tmp}/afolder", "folder"]),
    "eval-output-no-folder": (["eval", "{tmp}/test.tsv", "--output", "{tmp}/nowhere/out.txt"], ["{tmp}/nowhere"]),
    "bench-seconds-negative": (["bench", "--seconds", "-1"], ["--seconds"]),
    "bench-seconds-nan": (["bench", "--seconds", "nan"], ["--seconds"]),
    "bench-seconds-inf": (["bench", "--seconds", "inf"], ["--seconds"]),
}


@pytest.mark.parametrize("case", OPTION_CASES.keys())
def test_option_out_of_range_is_refused(case, trained_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test.tsv").write_text(GOOD_TSV, encoding="utf-8")
    (tmp_path / "afolder").mkdir()
    before = snapshot(tmp_path)
    args, fragments = OPTION_CASES[case]
    args = [arg.format(tmp=tmp_path) for arg in args]
    if args[0] != "bench":
        args += ["--model", str(trained_model)]
    result = runner.invoke(app, args, env={"TT_MODEL": None})
    assert_refused(result, before, tmp_path, [f.format(tmp=tmp_path) for f in fragments])


def test_eval_writes_no_output_when_calibration_fails(trained_model, tmp_path, monkeypatch):
    """--output is written last, once the scores and the calibration have all worked."""
    import tt.cli.eval_command

    def broken(*args, **kwargs):
        raise tt.cli.eval_command.UserError("calibration failed")

    monkeypatch.setattr(tt.cli.eval_command, "run_calibration", broken)
    (tmp_path / "test.tsv").write_text(GOOD_TSV, encoding="utf-8")
    before = snapshot(tmp_path)
    result = runner.invoke(
        app, ["eval", str(tmp_path / "test.tsv"), "--model", str(trained_model), "--calibration", "--output", str(tmp_path / "out.txt")]
    )
    assert_refused(result, before, tmp_path, ["calibration failed"])


# ---- a real process, stderr a pipe


def test_long_error_stays_one_line_in_a_pipe(tmp_path):
    # Rich wraps at 80 columns when stderr is not a terminal, unless told not to.
    base = f"{tmp_path}/"
    needed = 300 - len(base)
    # Folder names of 50 characters (a name may have at most 255 bytes), never a trailing "/".
    path = base + "".join("/" if i % 50 == 49 and i < needed - 1 else "m" for i in range(needed))
    assert len(path) == 300 and not Path(path).exists()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TT_MODEL")}
    process = subprocess.run(
        [sys.executable, "-m", "tt.cli", "translate", "--model", path],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120, text=True,
    )
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr
    lines = process.stderr.splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith("error:") and path in lines[0], lines[0]
