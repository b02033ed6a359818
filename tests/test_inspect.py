"""`tt translate --lens / --attention`: the logit lens and cross-attention against their definitions."""

import json
import re

import pytest
import torch
from rich.cells import cell_len
from typer.testing import CliRunner

from tt.cli.main import app
from tt.data.normalize import normalize
from tt.data.tokenizer import BOS_ID
from tt.model.attention import padding_allowed
from tt.model.recording import recording
from tt.model.checkpoint import load_model_folder, save_model_folder
from tt.model.transformer import ModelConfig, Transformer

runner = CliRunner()
SHORT, LONG = "我有三本书。", "你有十杯茶吗？我有八只猫。"


@pytest.fixture(scope="module")
def two_layers(trained_model, tmp_path_factory):
    """The trained tokenizer with an untrained 2-layer model: the lens needs more than one layer."""
    _, tokenizer, _ = load_model_folder(trained_model)
    torch.manual_seed(7)
    config = ModelConfig(
        src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size,
        d_model=16, n_heads=2, d_ff=32, n_layers=2, dropout=0.0, max_positions=128,
    )
    folder = tmp_path_factory.mktemp("two-layers") / "model"
    save_model_folder(folder, Transformer(config), tokenizer, {})
    return folder


def translate(model, *args):
    result = runner.invoke(app, ["translate", "--model", str(model), *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def records(model, *args) -> list[dict]:
    return [json.loads(line) for line in translate(model, "--json", *args).stdout.splitlines()]


def teacher_forced(folder, text, record):
    """Recompute the whole output at once, no cache: each layer's output and each layer's attention."""
    model, tokenizer, _ = load_model_folder(folder)
    src = torch.tensor([tokenizer.encode_src(normalize(text))])
    tokens = [tokenizer.tgt.piece_to_id(step["token"]) for step in record["steps"]]
    mask = src == 0
    layers_out = []
    with torch.no_grad(), recording(model, attention=True) as seen:
        memory, allowed = model.encode(src, mask), padding_allowed(mask)
        x = model.embed(model.tgt_embed, torch.tensor([[BOS_ID] + tokens[:-1]]))
        for layer in model.decoder:  # each layer by hand: the lens reads what each one hands on
            x = layer(x, memory, allowed)
            layers_out.append(x)
        lens = [model.log_probs(out[0]) for out in layers_out]  # each (tgt_len, tgt_vocab)
    return model, tokenizer, tokens, lens, [weights[0] for weights in seen.attention]  # each (n_heads, tgt_len, src_len)


def test_lens_json_follows_its_definition(two_layers):
    [record] = records(two_layers, "--lens", SHORT)
    model, tokenizer, tokens, lens, _ = teacher_forced(two_layers, SHORT, record)
    for log_probs in lens:
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(len(tokens)))
    for position, (token, step) in enumerate(zip(tokens, record["steps"])):
        assert [layer["layer"] for layer in step["layers"]] == [1, 2]
        assert step["layers"][-1]["prob"] == pytest.approx(step["prob"], rel=1e-5)  # the last layer is the output
        assert step["layers"][-1]["token"] == step["token"]
        for layer, log_probs in zip(step["layers"], lens):
            assert layer["prob"] == pytest.approx(float(log_probs[position, token].exp()), rel=1e-4)
            assert layer["token"] == tokenizer.tgt_piece(int(log_probs[position].argmax()))


def test_lens_table_and_probs_table(two_layers):
    result = translate(two_layers, "--probs", "--lens", SHORT)
    [record] = records(two_layers, "--lens", SHORT)
    assert "logit lens" in result.stdout and "layer 1" in result.stdout and "layer 2" in result.stdout
    assert "top 5" in result.stdout  # --probs still shows its own table
    first = record["steps"][0]["layers"][0]
    assert f"{first['token']} {first['prob']:.3f}" in result.stdout
    assert "layer 2" in translate(two_layers, "--lens", SHORT).stdout  # --lens alone: its table


def test_attention_rows_are_distributions_over_real_source_pieces(two_layers):
    _, tokenizer, _ = load_model_folder(two_layers)
    short, long = records(two_layers, "--attention", SHORT, LONG)  # one batch: the short one is padded
    for text, record in ((SHORT, short), (LONG, long)):
        pieces = [tokenizer.src_piece(i) for i in tokenizer.encode_src(normalize(text))]
        assert record["source_pieces"] == pieces and pieces[-1] == "</s>"
        assert len(record["attention"]) == len(record["steps"])
        for row in record["attention"]:
            assert len(row) == len(pieces)
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
            assert min(row) >= 0
    assert len(short["attention"][0]) < len(long["attention"][0])


def test_attention_layer_head_and_mean(two_layers):
    [mean_last] = records(two_layers, "--attention", SHORT)
    [head1] = records(two_layers, "--attention-layer", 2, "--attention-head", 1, SHORT)
    [head2] = records(two_layers, "--attention-layer", 2, "--attention-head", 2, SHORT)
    [layer1] = records(two_layers, "--attention-layer", 1, SHORT)
    *_, weights = teacher_forced(two_layers, SHORT, mean_last)
    for rows, expected in ((head1, weights[1][0]), (head2, weights[1][1]), (layer1, weights[0].mean(0)), (mean_last, weights[1].mean(0))):
        torch.testing.assert_close(torch.tensor(rows["attention"]), expected, atol=1e-5, rtol=1e-4)
    average = (torch.tensor(head1["attention"]) + torch.tensor(head2["attention"])) / 2
    torch.testing.assert_close(torch.tensor(mean_last["attention"]), average, atol=1e-6, rtol=1e-5)


def label(weight: float) -> str:
    percent = round(weight * 100)
    return "1.0" if percent >= 100 else f".{percent:02d}"


def test_heatmap_rows_show_the_json_weights(two_layers):
    result = translate(two_layers, "--attention", "--attention-head", 2, SHORT)
    [record] = records(two_layers, "--attention", "--attention-head", 2, SHORT)
    assert "cross-attention, decoder layer 2 of 2, head 2" in result.stdout
    header, *_ = [line for line in result.stdout.splitlines() if "</s>" in line]
    assert header.split() == record["source_pieces"]
    lines = [" ".join(line.translate(str.maketrans("", "", "░▒▓█")).split()) for line in result.stdout.splitlines()]
    for step, row in zip(record["steps"], record["attention"]):
        assert " ".join([step["token"], *map(label, row)]) in lines


def test_long_heatmap_is_split_not_cropped(two_layers):
    result = translate(two_layers, "--attention", LONG * 3)
    [record] = records(two_layers, "--attention", LONG * 3)
    assert max(cell_len(line) for line in result.stdout.splitlines()) <= 80
    spans = re.findall(r"source pieces (\d+)–(\d+) of (\d+)", result.stdout)
    assert len(spans) > 1 and int(spans[0][0]) == 1
    assert all(int(end) + 1 == int(start) for (_, end, _), (start, _, _) in zip(spans, spans[1:]))
    assert int(spans[-1][1]) == int(spans[-1][2]) == len(record["source_pieces"])


def test_plain_json_has_segmentation_but_no_inspection(trained_model):
    _, tokenizer, _ = load_model_folder(trained_model)
    [record] = records(trained_model, SHORT)
    assert "attention" not in record and all("layers" not in step for step in record["steps"])
    pieces = [step["token"] for step in record["steps"] if step["token"] != "</s>"]
    again = [tokenizer.tgt_piece(i) for i in tokenizer.encode_tgt(normalize(record["translation"]))[:-1]]
    assert record["segmentation_differs"] == (pieces != again)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attention-layer", "3"], "--attention-layer 3"),
        (["--attention", "--attention-head", "0"], "--attention-head 0"),
        (["--lens", "--beam", "2"], "leave out --beam"),
        (["--attention", "--n-best", "2"], "leave out --beam"),
        (["--probs", "--sample", "--n", "2"], "--probs shows one decoding step by step: leave out --beam/--n-best/--n"),
    ],
)
def test_bad_inspection_options(two_layers, args, message):
    result = runner.invoke(app, ["translate", "--model", str(two_layers), *args, SHORT])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_brackets_in_text_are_not_markup(two_layers):
    result = translate(two_layers, "--probs", "--lens", "--attention", "[/]我有[b]")
    assert "logit lens: [/]我有[b] →" in result.stdout and "cross-attention" in result.stdout
