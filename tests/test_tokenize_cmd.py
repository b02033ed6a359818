"""`tt tokenize`: the pieces and ids the model sees, byte fallback marked."""

import json

import pytest
from typer.testing import CliRunner

from tt.cli.main import app
from tt.data.normalize import normalize
from tt.model.checkpoint import load_model_folder

runner = CliRunner()


def tokenize(model, *args):
    return runner.invoke(app, ["tokenize", "--model", str(model), *map(str, args)])


def test_json_matches_the_tokenizer(trained_model):
    _, tokenizer, _ = load_model_folder(trained_model)
    text = "我有三书。ｈａｖｅ  龘"  # full-width letters fold, spaces collapse, 龘 was never seen
    result = tokenize(trained_model, "--json", text)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["text"] == text and record["normalized"] == normalize(text) == "我有三书。have 龘"
    ids = tokenizer.encode_src(normalize(text))
    assert [p["id"] for p in record["pieces"]] == ids
    assert [p["piece"] for p in record["pieces"]] == [tokenizer.src_piece(i) for i in ids]
    assert record["pieces"][-1]["piece"] == "</s>"
    marked = [p["piece"] for p in record["pieces"] if p["byte"]]
    assert marked == ["<0xE9>", "<0xBE>", "<0x98>"]  # 龘 in UTF-8, one piece per byte


def test_target_side_and_several_texts(trained_model):
    _, tokenizer, _ = load_model_folder(trained_model)
    result = tokenize(trained_model, "--side", "tgt", "--json", "I have three books.", "Hello")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["side"] for r in records] == ["tgt", "tgt"]
    assert [p["id"] for p in records[0]["pieces"]] == tokenizer.encode_tgt("I have three books.")


def test_table_marks_byte_pieces(trained_model):
    result = tokenize(trained_model, "书龘")
    assert result.exit_code == 0, result.output
    assert "<0xE9>" in result.stdout and "byte" in result.stdout
    assert "(3 byte fallback), src vocabulary" in " ".join(result.stdout.split())  # the caption may wrap


@pytest.mark.parametrize("args, message", [(["--side", "both", "你好"], "--side must be src or tgt"), ([], "Missing argument")])
def test_bad_input(trained_model, args, message):
    result = tokenize(trained_model, *args)
    assert result.exit_code != 0 and message in result.output + result.stderr and "Traceback" not in result.output


def test_missing_model_folder(tmp_path):
    result = runner.invoke(app, ["tokenize", "--model", str(tmp_path / "none"), "你好"])
    assert result.exit_code == 1 and "no such model folder" in result.stderr


def test_brackets_in_text_are_not_markup(trained_model):
    result = tokenize(trained_model, "[/b]have")
    assert result.exit_code == 0, result.output
    assert "[/b]have" in result.stdout
