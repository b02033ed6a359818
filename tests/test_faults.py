"""Faults during training and translation: a NaN, a full disk, changed options on --resume,
batch neighbours, the network, pickle. Each must end in one clear line or in the same answer.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import json
import math
import re
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import tt.data.atomic
import tt.model.checkpoint
import tt.model.metrics
import tt.model.train
from conftest import TINY_MODEL_OPTIONS, tiny_pairs, write_tsv
from tt.cli.main import app
from tt.model.translator import Translator
from tt.model.checkpoint import load_model_folder, read_training_state
from tt.model.run_folder import FolderLock
from tt.model.decode import DecodeConfig, greedy_decode
from tt.model.beam import BeamConfig, beam_decode

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def train(*args):
    return runner.invoke(app, ["train", *map(str, args), *TINY_MODEL_OPTIONS])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(lines) >= 1 and lines[-1].startswith("error:"), result.stderr
    return lines[-1]


def contents(folder, skip=()):
    """Every file under `folder` (the prepared corpus included) → its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


# ---- a loss that stops being a number


def nan_at_step(monkeypatch, bad_step: int) -> None:
    """Make the loss of one training step NaN, as an exploding run would."""
    original = tt.model.loss.loss_in_chunks  # once per training step (and per dev batch)
    calls = {"n": 0}

    def loss(*args, **kwargs):
        parts = original(*args, **kwargs)
        if torch.is_grad_enabled():  # training steps, not dev evaluation
            calls["n"] += 1
            if calls["n"] == bad_step:
                return dataclasses.replace(parts, kl=parts.kl * float("nan"))
        return parts

    monkeypatch.setattr(tt.model.loss, "loss_in_chunks", loss)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(monkeypatch, tmp_path, corpus_file):
    out = tmp_path / "model"
    nan_at_step(monkeypatch, 6)
    result = train(corpus_file, "--out", out, "--max-steps", "20", "--save-every", "0.000001")
    line = one_error_line(result)
    assert "training diverged at step 6: the loss is nan" in line
    assert "keeps the checkpoint of step 5" in line and "--resume --lr" in line
    state, _ = read_training_state(out)
    assert state["step"] == 5
    model, _, record = load_model_folder(out)
    assert record["step"] == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert no_temporary_files(out)


def test_nan_before_any_checkpoint_says_so(monkeypatch, tmp_path, corpus_file):
    out = tmp_path / "model"
    nan_at_step(monkeypatch, 1)
    line = one_error_line(train(corpus_file, "--out", out, "--max-steps", "5"))
    assert "no checkpoint was written yet" in line and "lower --lr" in line
    assert not out.exists()  # a run that saved nothing leaves no folder behind


# ---- a tampered training state


@pytest.mark.parametrize("key, value", [("step", "x"), ("epoch", -1), ("position", True), ("elapsed_s", float("nan")), ("best", 5)])
def test_a_tampered_training_state_is_refused_in_one_line(tmp_path, corpus_file, key, value):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "3").exit_code == 0
    path = out / "train_state.safetensors"
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    state = json.loads(metadata["tt.state"])
    state[key] = value
    save_file(load_file(str(path)), str(path), metadata={**metadata, "tt.state": json.dumps(state)})
    line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "6"]))
    assert f"{path}: the training state's {key}" in line


# ---- --overwrite: the old model stays until the new run has a checkpoint of its own


def test_overwrite_that_fails_before_its_first_checkpoint_keeps_the_old_model(monkeypatch, tmp_path, corpus_file):
    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "3").exit_code == 0
    before = contents(out, skip=(".lock",))
    nan_at_step(monkeypatch, 2)
    line = one_error_line(train(corpus_file, "--out", out, "--max-steps", "5", "--overwrite"))
    assert "training diverged" in line
    after = contents(out, skip=(".lock",))
    assert after == before  # weights, config, state, tokenizer and metrics as they were


def test_overwrite_replaces_every_file_of_the_old_run(tmp_path, corpus_file):
    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "4").exit_code == 0
    assert (out / "tokenizer.model").exists()
    separate = [option for option in TINY_MODEL_OPTIONS if option != "--joint-vocab"] + ["--separate-vocab"]
    result = runner.invoke(app, ["train", str(corpus_file), "--out", str(out), "--max-steps", "2", "--overwrite", "--log-every", "1", *separate])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert "tokenizer.model" not in names  # the joint vocabulary of the old run would shadow the new pair
    assert {"tokenizer.src.model", "tokenizer.tgt.model", "metrics.jsonl"} <= names
    assert not [name for name in names if name.endswith(".pending")]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps and max(steps) == 2  # the new run's metrics only
    model, tokenizer, record = load_model_folder(out)
    assert record["step"] == 2 and not tokenizer.joint


# ---- a full disk


def test_disk_full_at_fsync_keeps_the_previous_checkpoint(monkeypatch, tmp_path, corpus_file):
    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "3").exit_code == 0
    before = contents(out, skip=("metrics.jsonl",))

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tt.data.atomic, "_sync_file", full)
    result = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "6"])
    line = one_error_line(result)
    assert "No space left on device" in line and "previous file" in line
    after = contents(out, skip=("metrics.jsonl",))
    assert after == before  # every checkpoint file exactly as it was
    assert read_training_state(out)[0]["step"] == 3


def test_a_real_write_failing_halfway_is_one_line_and_keeps_the_previous_state(tmp_path, corpus_file):
    """A real process under a file-size limit: the kernel refuses the write (EFBIG) halfway.

    No mock: the bytes really stop at the limit, as they would on a full disk, wherever in
    the stack the write happens (safetensors' own writer reported this as a SafetensorError,
    which escaped as a traceback).
    """
    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "3").exit_code == 0
    state_before = (out / "train_state.safetensors").read_bytes()
    limit = len(state_before) // 2  # above every other file tt writes here, below the state

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "tt.cli", "train", "--resume", "--out", str(out), "--max-steps", "6"],
        capture_output=True, text=True, timeout=120, preexec_fn=limited, env={**os.environ, "COLUMNS": "200"},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith(f"error: {out / 'train_state.safetensors'}: cannot write (File too large)"), lines[-1]
    assert (out / "train_state.safetensors").read_bytes() == state_before
    assert read_training_state(out)[0]["step"] == 3
    assert no_temporary_files(out) and not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_a_failed_output_write_leaves_no_file(monkeypatch, trained_model, tmp_path):
    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tt.data.atomic, "_sync_file", full)
    target = tmp_path / "out.txt"
    result = runner.invoke(app, ["translate", "--model", str(trained_model), "--output", str(target), "我有三本书。"])
    assert f"{target}: cannot write (No space left on device)" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


# ---- --resume with changed options


@pytest.fixture
def short_run(tmp_path, corpus_file) -> Path:
    out = tmp_path / "model"
    # small named: the default preset depends on the machine (tiny on a CPU in float32)
    assert train(corpus_file, "--out", out, "--max-steps", "4", "--preset", "small").exit_code == 0
    return out


def test_resume_applies_and_reports_allowed_changes(short_run, tmp_path):
    config = tmp_path / "more.toml"
    config.write_text("weight-decay = 0.01\n")
    result = runner.invoke(
        app, ["train", "--resume", "--out", str(short_run), "--max-steps", "30", "--lr", "0.0005", "--batch-tokens", "128",
              "--config", str(config), "--d-model", "16", "--seed", "3"],  # the same shape and seed as recorded: not a change
    )
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stderr and "at step 4" in result.stderr
    assert "--lr 0.001 → 0.0005" in result.stderr
    assert "--batch-tokens 256 → 128" in result.stderr
    assert "--max-steps 4 → 30" in result.stderr
    record = json.loads((short_run / "config.json").read_text())
    assert record["train"]["learning_rate"] == 0.0005 and record["train"]["batch_tokens"] == 128
    metrics = [json.loads(line) for line in (short_run / "metrics.jsonl").read_text().splitlines()]
    last = [m for m in metrics if "lr" in m][-1]
    # the schedule with the new peak: 5e-4 · min(step/5, √(5/step)) (warm-up 5 in TINY_MODEL_OPTIONS),
    # in the default cool-down of the new limit's last 40 %
    step = last["step"]
    cooldown = min(1.0, (1 - (step - 1) / 30) / 0.4)
    assert last["lr"] == pytest.approx(0.0005 * min(step / 5, math.sqrt(5 / step)) * cooldown)
    state = read_training_state(short_run)[0]
    assert state["batch_tokens"] == 128
    # the optimizer's own copy too (restoring its state would bring back the old value)
    assert "--weight-decay 0 → 0.01" in result.stderr
    assert {group["weight_decay"] for group in state["param_groups"]} == {0.01}


@pytest.mark.parametrize(
    "option, value",
    [("--d-model", "32"), ("--layers", "2"), ("--vocab-size", "400"), ("--separate-vocab", None), ("--tgt-vocab-size", "400"), ("--seed", "9"),
     ("--max-chars", "50"), ("--src-col", "2"), ("--init-from", "somewhere"), ("--preset", "tiny")],
)
def test_resume_refuses_options_that_define_the_run(short_run, option, value):
    before = contents(short_run)
    args = ["train", "--resume", "--out", str(short_run), "--max-steps", "8", option] + ([value] if value else [])
    line = one_error_line(runner.invoke(app, args))
    assert f"--resume cannot change {option}" in line
    assert contents(short_run) == before


def test_resume_with_the_config_file_that_started_the_run(tmp_path, corpus_file):
    """Re-running the first command with --resume works, preset included; another preset is refused."""
    out, config = tmp_path / "model", tmp_path / "run.toml"
    config.write_text('preset = "tiny"\nmax-steps = 3\n')
    assert train(corpus_file, "--out", out, "--config", config).exit_code == 0
    config.write_text('preset = "tiny"\nmax-steps = 5\n')
    result = runner.invoke(app, ["train", "--resume", "--out", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert read_training_state(out)[0]["step"] == 5
    other = runner.invoke(app, ["train", "--resume", "--out", str(out), "--preset", "small", "--max-steps", "7"])
    assert "--resume cannot change --preset" in one_error_line(other)


def test_resume_accepts_the_same_corpus_and_refuses_a_changed_one(short_run, corpus_file, tmp_path):
    same = runner.invoke(app, ["train", str(corpus_file), "--resume", "--out", str(short_run), "--max-steps", "6"])
    assert same.exit_code == 0, same.output
    other = write_tsv(tmp_path / "other.tsv", tiny_pairs())
    assert "--resume cannot change the corpus file" in one_error_line(
        runner.invoke(app, ["train", str(other), "--resume", "--out", str(short_run), "--max-steps", "8"])
    )
    before = contents(short_run)
    pairs = tiny_pairs()
    pairs[40] = ("我有一只猫。", "I have a cat.")  # the recorded file edited in place: as many pairs as before
    write_tsv(corpus_file, pairs)
    line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "8"]))
    assert "the corpus changed since this run started; --resume needs the data the run started with" in line
    assert contents(short_run) == before  # refused before its prepared data was touched
    write_tsv(corpus_file, tiny_pairs()[:50])
    line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "8"]))
    assert "the corpus changed since this run started" in line
    assert contents(short_run) == before


def test_resume_reuses_the_recorded_thread_count_and_reports_a_change(tmp_path, corpus_file):
    out = tmp_path / "model"
    threads = torch.get_num_threads()
    try:
        assert train(corpus_file, "--out", out, "--max-steps", "2", "--threads", "1").exit_code == 0
        assert json.loads((out / "config.json").read_text())["train"]["threads"] == 1
        torch.set_num_threads(2)  # what torch would choose by itself on a 2-core machine
        same = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "3"])
        assert same.exit_code == 0, same.output
        assert "cpu, 1 thread\n" in same.stderr and "changed: --max-steps 2 → 3\n" in same.stderr
        assert torch.get_num_threads() == 1
        other = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "4", "--threads", "2"])
        assert other.exit_code == 0, other.output
        assert "changed: --max-steps 3 → 4; --threads 1 → 2" in other.stderr, other.stderr
        assert json.loads((out / "config.json").read_text())["train"]["threads"] == 2
    finally:
        torch.set_num_threads(threads)


def test_resume_after_a_kill_drops_the_lines_logged_after_the_checkpoint(short_run):
    metrics = short_run / "metrics.jsonl"
    logged = [json.loads(line) for line in metrics.read_text().splitlines()]
    # What a run killed with no checkpoint after step 4 leaves: steps 5 and 6 logged, half a line of step 7.
    lost = [{**logged[-1], "step": 5}, {**logged[-1], "step": 6}]
    with open(metrics, "a") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in lost) + '{"step": 7, "lo')
    result = runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "8", "--log-every", "1"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.startswith('{"') and line.endswith("}")]
    train_steps = [line["step"] for line in lines if "loss" in line]
    assert train_steps == sorted(set(train_steps)) and train_steps[-4:] == [5, 6, 7, 8], train_steps
    assert '{"step": 7, "lo' in metrics.read_text()  # a broken line is not ours to judge: tt info skips it


def test_resume_after_the_corpus_moved_trains_on_the_prepared_data_it_made(short_run, corpus_file, tmp_path):
    corpus_file.rename(tmp_path / "elsewhere.tsv")
    result = runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "6"])
    assert result.exit_code == 0, result.output
    assert f"{corpus_file}: gone; training on {short_run / 'prepared'}, prepared from the same bytes" in result.stderr
    assert read_training_state(short_run)[0]["step"] == 6
    shard = next(p for p in (short_run / "prepared").iterdir() if p.name.startswith("src"))
    shard.write_bytes(shard.read_bytes()[:-2])  # the prepared data no longer whole: the corpus is needed after all
    line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "8"]))
    assert line == f"error: {corpus_file}: no such file"


def test_resume_of_a_run_recorded_before_data_keys_still_counts_its_pairs(short_run, corpus_file):
    config = json.loads((short_run / "config.json").read_text())
    del config["data_key"]  # as runs of earlier versions were recorded
    (short_run / "config.json").write_text(json.dumps(config))
    write_tsv(corpus_file, tiny_pairs()[:50])
    line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "8"]))
    assert "the corpus changed since this run started (50 usable pairs now, 80 then)" in line


def test_resume_refuses_a_dev_set_that_changed(tmp_path, corpus_file):
    dev = write_tsv(tmp_path / "dev.tsv", [("你好", "Hello"), ("谢谢", "Thanks")])
    out = tmp_path / "model"
    assert train(corpus_file, "--dev", dev, "--out", out, "--max-steps", "3").exit_code == 0
    write_tsv(dev, [("你好", "Hi"), ("谢谢", "Thanks")])
    line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "5"]))
    assert "the dev set changed since this run started" in line


# ---- the same sentence, whatever its neighbours


SENTENCES = ["我有三本书。", "你有两只猫吗？", "我有十杯茶。", "好", "你有九个苹果吗？我有八本书。", "猫"]


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_a_sentence_translates_the_same_in_any_batch(trained_model, search):
    translator = Translator(trained_model)
    ids = [translator.tokenizer.encode_src(text) for text in SENTENCES]
    config = DecodeConfig(max_len_ratio=1.0, max_len_extra=4)

    def decode(batch):
        if search == "greedy":
            return [(h.tokens, h.token_log_probs) for h in greedy_decode(translator.model, batch, config)]
        ranked = beam_decode(translator.model, batch, BeamConfig(beam=3), config)
        return [(items[0][1].tokens, items[0][1].token_log_probs) for items in ranked]

    alone = [decode([one])[0] for one in ids]
    together = decode(ids)
    reordered = decode(ids[::-1])[::-1]
    crowded = decode([ids[4]] * 3 + ids + [ids[0]])[3:-1]  # repeated and long neighbours
    for batch in (together, reordered, crowded):
        for (tokens, log_probs), (tokens_alone, log_probs_alone) in zip(batch, alone):
            assert tokens == tokens_alone
            assert log_probs == pytest.approx(log_probs_alone, abs=1e-5)


# ---- no network, no pickle


def test_no_network_during_training_and_translation(monkeypatch, tmp_path, corpus_file):
    def refuse(*args, **kwargs):
        raise AssertionError("tt tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "2").exit_code == 0
    assert runner.invoke(app, ["translate", "--model", str(out), "我有三本书。"]).exit_code == 0
    evaluation = runner.invoke(app, ["eval", str(corpus_file), "--model", str(out), "--json"])
    assert evaluation.exit_code == 0, evaluation.output


def test_nothing_in_tt_can_unpickle():
    """Loading from strangers must never run code: no pickle, no torch.load, no eval/exec.

    Read from the syntax tree, so that prose mentioning pickle does not count.
    """
    unsafe_modules = {"pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}
    offenders = []
    for folder in ("cli", "model", "data"):
        for path in (ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                where = f"{path.name}:{getattr(node, 'lineno', '?')}"
                if isinstance(node, ast.Import) and {a.name.split(".")[0] for a in node.names} & unsafe_modules:
                    offenders.append(where)
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in unsafe_modules:
                    offenders.append(where)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                    offenders.append(where)
                if isinstance(node, ast.Attribute) and node.attr == "load" and getattr(node.value, "id", None) == "torch":
                    offenders.append(where)
    assert offenders == []


def test_loading_a_model_never_calls_torch_load(monkeypatch, trained_model):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", forbidden)
    result = runner.invoke(app, ["translate", "--model", str(trained_model), "我有三本书。"])
    assert result.exit_code == 0, result.output


def test_a_second_trainer_on_the_same_folder_is_refused(short_run):
    with FolderLock(short_run) as lock:  # as a run in another process would hold it
        lock.acquire()
        line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "8"]))
        assert f"{short_run}: another tt train (process {os.getpid()}) is writing this folder" in line
    result = runner.invoke(app, ["train", "--resume", "--out", str(short_run), "--max-steps", "8"])
    assert result.exit_code == 0, result.output  # released with its holder


def test_resuming_a_run_that_has_no_checkpoint_yet_names_the_run_writing_it(tmp_path):
    out = tmp_path / "model"
    with FolderLock(out) as lock:  # a new run in another process, before its first checkpoint
        lock.acquire()
        line = one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(out)]))
        assert f"another tt train (process {os.getpid()}) is writing this folder; it has no checkpoint to resume yet" in line
    assert "no training run to resume here" in one_error_line(runner.invoke(app, ["train", "--resume", "--out", str(out)]))


# ---- translation input: whatever the bytes, one line out per line in

TRANSLATION_INPUTS = {
    "empty line": b"\n",
    "spaces only": b"   \t  \n",
    "emoji": "😀🇨🇳👍🏽\n".encode(),
    "control characters": b"\x00\x01\x07\x08\x0b\x0c\x1b[31m\x7f\n",
    "line separators inside a line": "一\u2028二\u2029三\x85四\r五\n".encode(),
    "invalid UTF-8": b"\xff\xfe\xc3\x28\xa0\xa1\n",
    "binary junk": bytes(range(256)).replace(b"\n", b"") + b"\n",
    "100,000 characters": ("我有三本书。" * 16667)[:100_000].encode() + b"\n",
}


@pytest.mark.parametrize("data", TRANSLATION_INPUTS.values(), ids=TRANSLATION_INPUTS.keys())
def test_translation_input_never_breaks_the_one_line_rule(trained_model, data):
    stream = data + "我有三本书。\n".encode()  # and the next line is still translated
    result = runner.invoke(app, ["translate", "--model", str(trained_model), "--batch-size", "1"], input=stream)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    lines = result.stdout.split("\n")
    assert len(lines) == 3 and lines[-1] == "", result.stdout  # two lines, each ended
    assert lines[1] == runner.invoke(app, ["translate", "--model", str(trained_model), "我有三本书。"]).stdout.removesuffix("\n")
    if data.strip() == b"":
        assert lines[0] == ""


def test_a_100000_character_line_is_cut_with_a_warning_naming_it(trained_model):
    line = ("我有三本书。" * 16667)[:100_000]
    result = runner.invoke(app, ["translate", "--model", str(trained_model)], input=f"好\n{line}\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split("\n")) == 3
    assert re.search(r"warning: sentence 2: [\d,]+ source pieces, more than the model's 1,024", result.stderr)


def test_a_full_disk_under_metrics_jsonl_stops_training_with_one_line(monkeypatch, tmp_path, corpus_file):
    original = tt.model.metrics.MetricsLog.write

    def write(self, metrics):
        if metrics.get("step", 0) < 4:
            return original(self, metrics)
        real, self.file = self.file, _FullFile()  # this one write meets a full disk
        try:
            return original(self, metrics)
        finally:
            self.file = real

    monkeypatch.setattr(tt.model.metrics.MetricsLog, "write", write)
    out = tmp_path / "model"
    line = one_error_line(train(corpus_file, "--out", out, "--max-steps", "20", "--log-every", "1", "--save-every", "0.000001"))
    assert f"{out / 'metrics.jsonl'}: cannot write (No space left on device)" in line
    assert read_training_state(out)[0]["step"] >= 3  # the checkpoints written before are whole


class _FullFile:
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass


def test_stdout_on_a_full_disk_is_one_line(trained_model):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "tt.cli", "translate", "--model", str(trained_model), "我有三本书。"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )
    assert result.returncode == 1, result.stderr
    said = [line for line in result.stderr.strip().splitlines() if "reached its length limit" not in line]  # a barely trained model
    assert said == ["error: cannot write the output: No space left on device"]


def test_a_reader_of_stderr_that_goes_away_does_not_stop_training(tmp_path, corpus_file):
    """`tt train … 2>&1 | head -2`: the pipe closes, training goes on to its limit and saves."""
    out = tmp_path / "model"
    command = [sys.executable, "-m", "tt.cli", "train", str(corpus_file), "--out", str(out), "--max-steps", "40",
               "--log-every", "2", *TINY_MODEL_OPTIONS]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.stderr.readline()  # the first line, then the reader leaves
    process.stderr.close()
    assert process.wait(timeout=300) == 0
    state, _ = read_training_state(out)
    assert state["step"] == 40
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps == sorted(set(steps)) and steps[-1] == 40
