"""`tt translate` through typer's runner: the pipe contract, JSON, tables, and errors."""

import json
import math
import os
import re
import signal
import stat
from concurrent.futures import ThreadPoolExecutor
import subprocess
from pathlib import Path
import sys
import time

from typer.testing import CliRunner

from conftest import tiny_pairs
from tt.cli.main import app
from tt.data.normalize import normalize
from tt.model.checkpoint import load_model_folder
from tt.model.decode import DecodeConfig, greedy_decode, max_output_length

runner = CliRunner()


def translate(model, *args, input=None, env=None):
    return runner.invoke(app, ["translate", "--model", str(model), *map(str, args)], input=input, env=env)


def expected_translations(model_dir, texts):
    model, tokenizer, _ = load_model_folder(model_dir)
    hyps = greedy_decode(model, [tokenizer.encode_src(normalize(t)) for t in texts])
    return [tokenizer.decode_tgt(h.tokens) for h in hyps]


def test_arguments_give_one_line_each(trained_model):
    result = translate(trained_model, "我有三本书。", "你有两只猫吗？")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == expected_translations(trained_model, ["我有三本书。", "你有两只猫吗？"])
    # stderr says nothing but, for this barely trained model, where a translation hit the length limit
    assert all("decoding reached its length limit before </s>" in line for line in result.stderr.splitlines())


def test_stdin_keeps_empty_lines(trained_model):
    result = translate(trained_model, input="我有三本书。\n\n你有两只猫吗？\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    assert [lines[0], lines[2]] == expected_translations(trained_model, ["我有三本书。", "你有两只猫吗？"])


def test_file_to_output(trained_model, tmp_path):
    source = tmp_path / "in.zh"
    source.write_text("\ufeff我有三本书。\n你有两只猫吗？\n", encoding="utf-8")
    target = tmp_path / "out.en"
    result = translate(trained_model, "--file", source, "--output", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert target.read_text(encoding="utf-8").splitlines() == expected_translations(trained_model, ["我有三本书。", "你有两只猫吗？"])
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_a_dash_reads_stdin(trained_model):
    expected = expected_translations(trained_model, ["我有三本书。", "你有两只猫吗？"])
    for args in (["-"], ["--file", "-"]):
        result = translate(trained_model, *args, input="我有三本书。\n你有两只猫吗？\n")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == expected


def test_output_onto_the_file_being_translated_is_refused(trained_model, tmp_path):
    source = tmp_path / "in.zh"
    source.write_text("我有三本书。\n", encoding="utf-8")
    link = tmp_path / "link.zh"
    link.symlink_to(source)
    for output in (source, link):
        result = translate(trained_model, "--file", source, "--output", output)
        assert result.exit_code == 1 and "which is being read; its text would be lost" in result.stderr
    assert source.read_text(encoding="utf-8") == "我有三本书。\n"


def test_output_writes_through_a_link_keeps_permissions_and_writes_into_devices(trained_model, tmp_path):
    expected = "\n".join(expected_translations(trained_model, ["我有三本书。"])) + "\n"
    target, link = tmp_path / "target.en", tmp_path / "link.en"
    target.write_text("old\n")
    target.chmod(0o600)
    link.symlink_to(target)
    assert translate(trained_model, "--output", link, "我有三本书。", "--precision", "bf16").exit_code == 0
    assert link.is_symlink() and target.read_text(encoding="utf-8") == expected
    assert target.stat().st_mode & 0o777 == 0o600
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:  # a named pipe: whoever reads it gets the translation
        read = pool.submit(lambda: open(fifo, encoding="utf-8").read())
        assert translate(trained_model, "--output", fifo, "我有三本书。", "--precision", "bf16").exit_code == 0
        assert read.result(timeout=60) == expected
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert translate(trained_model, "--output", os.devnull, "我有三本书。").exit_code == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_invalid_utf8_is_replaced_with_a_warning_and_keeps_one_line_per_line(trained_model, tmp_path):
    source = tmp_path / "in.zh"
    source.write_bytes("好\n".encode() + b"\xff\xfe\x00junk\n" + "三".encode())
    target = tmp_path / "out.en"
    result = translate(trained_model, "--file", source, "--output", target)
    assert result.exit_code == 0, result.output
    assert f"{source}:2: invalid UTF-8 (byte 0xff at column 1)" in result.stderr
    assert len(target.read_text(encoding="utf-8").split("\n")) == 3 + 1  # three lines, each ended


def test_failed_translation_leaves_no_output(tmp_path):
    source = tmp_path / "in.zh"
    source.write_text("好\n", encoding="utf-8")
    target = tmp_path / "out.en"
    result = translate(tmp_path / "no-model", "--file", source, "--output", target)
    assert result.exit_code == 1
    assert "no-model" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zh"]


def test_json_lines_contract(trained_model):
    result = translate(trained_model, "--json", "--top-k", "3", "我有三本书。", "")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["source"] == "我有三本书。"
    steps = record["steps"]
    assert steps, record
    tokens = [step["token"] for step in steps]
    assert "</s>" not in tokens[:-1]  # decoding stops at the first </s>
    if tokens[-1] != "</s>":  # only the length limit ends a sentence without one
        model, tokenizer, _ = load_model_folder(trained_model)
        assert len(tokens) == max_output_length(len(tokenizer.encode_src("我有三本书。")), DecodeConfig(), model)
    assert record["unfinished"] == (tokens[-1] != "</s>")
    for step in steps:
        assert 0 < step["prob"] <= 1
        assert len(step["top"]) == 3
        assert step["top"][0]["token"] == step["token"]  # greedy picks the top
        assert step["top"][0]["prob"] == step["prob"]
        probs = [t["prob"] for t in step["top"]]
        assert probs == sorted(probs, reverse=True)
        assert step["entropy"] >= 0
    empty = json.loads(lines[1])
    assert empty == {"source": "", "translation": "", "steps": []}


def test_probs_table_shows_steps_and_totals(trained_model):
    result = translate(trained_model, "--probs", "我有三本书。")
    assert result.exit_code == 0, result.output
    record = json.loads(translate(trained_model, "--json", "我有三本书。").stdout)
    assert "perplexity" in result.stdout and "top 5" in result.stdout
    first = record["steps"][0]
    assert f"{first['prob']:.4f}" in result.stdout
    assert f"{-math.log(first['prob']):.3f}" in result.stdout


def test_model_from_environment(trained_model):
    result = runner.invoke(app, ["translate", "我有三本书。"], env={"TT_MODEL": str(trained_model)})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == expected_translations(trained_model, ["我有三本书。"])
    missing = runner.invoke(app, ["translate", "我有三本书。"], env={"TT_MODEL": "/no/such/model"})
    assert missing.exit_code == 1 and "$TT_MODEL names it" in missing.stderr and "/no/such/model" in missing.stderr


def test_every_command_that_reads_a_model_takes_the_short_option(trained_model, tmp_path):
    short = runner.invoke(app, ["translate", "-m", str(trained_model), "我有三本书。"])
    assert short.exit_code == 0, short.output
    assert short.stdout.splitlines() == expected_translations(trained_model, ["我有三本书。"])
    # The others: -m names the model, so a missing folder is the model's error, not an unknown option.
    test = tmp_path / "test.tsv"
    test.write_text("你\tyou\n", encoding="utf-8")
    for command in (["eval", str(test)], ["score", "--src", "你", "--ref", "you"], ["tokenize", "你"],
                    ["explain", "--src", "你", "--ref", "you"], ["info"], ["export", str(tmp_path / "out")]):
        result = runner.invoke(app, [*command, "-m", str(tmp_path / "none")])
        assert result.exit_code == 1, (command, result.output)
        assert "no such model folder" in result.stderr, (command, result.stderr)


def test_missing_model_is_one_line(tmp_path):
    result = translate(tmp_path / "none", "你好")
    assert result.exit_code == 1
    assert "no such model folder" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_runs_as_a_command_and_a_module():
    tt = str(Path(sys.executable).parent / "tt")  # the console script beside this Python
    for command in ([tt, "--help"], [sys.executable, "-m", "tt.cli", "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "train" in done.stdout and "translate" in done.stdout


def test_sigterm_during_translate_to_a_file_keeps_the_old_file_and_leaves_no_temporary(trained_model, tmp_path):
    source, output = tmp_path / "in.zh", tmp_path / "out.en"
    source.write_text("我有三本书。你有两只猫吗？\n" * 50_000, encoding="utf-8")
    output.write_text("the previous translations\n")
    command = [sys.executable, "-m", "tt.cli", "translate", "--model", str(trained_model), "--file", str(source), "--output", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]:  # translating into the temporary file
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in stderr, stderr
    assert output.read_text() == "the previous translations\n"
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_reader_that_goes_away_ends_tables_as_it_ends_plain_output(trained_model, tmp_path):
    """`tt translate --probs … | head -1` exits 0 and says nothing, as plain output does."""
    source = tmp_path / "in.zh"
    source.write_text("我有三本书。\n" * 200, encoding="utf-8")
    for options in ([], ["--probs"]):
        command = [sys.executable, "-m", "tt.cli", "translate", "--model", str(trained_model), "--file", str(source), *options]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert process.stdout.readline()  # one line, then the reader leaves
        process.stdout.close()
        assert process.wait(timeout=120) == 0, options
        said = [line for line in process.stderr.read().decode().splitlines() if "reached its length limit" not in line]
        assert said == [], options


def test_a_translation_cut_by_the_length_limit_is_warned_about_on_both_paths(trained_model):
    sentences = [s for s, _ in tiny_pairs()[:12]]
    result = translate(trained_model, "--json", *sentences)
    unfinished = [i for i, line in enumerate(result.stdout.splitlines(), start=1) if json.loads(line)["unfinished"]]
    assert unfinished, "this barely trained model repeats itself until the limit on some sentence"
    warned = lambda stderr: [int(n) for n in re.findall(r"warning: sentence (\d+): decoding reached its length limit before </s>", stderr)]
    assert warned(result.stderr) == unfinished
    quick = translate(trained_model, *sentences)  # plain arguments: the NumPy quick path
    assert quick.exit_code == 0 and warned(quick.stderr) == unfinished
