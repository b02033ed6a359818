"""`tt score`: forced decoding, each number against its definition, and against greedy decoding."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_pairs, write_tsv
from tt.cli.main import app
from tt.model.translator import segmentation_differs
from tt.data.normalize import normalize
from tt.data.tokenizer import BOS_ID, EOS_ID
from tt.model.checkpoint import load_model_folder, save_model_folder
from tt.model.decode import greedy_decode
from tt.model.forced import force_decode
from tt.model.transformer import ModelConfig, Transformer

runner = CliRunner()
SOURCES = ["我有三本书。", "你有两只猫吗？", "我有十杯茶。", "你好世界!"]


def score(model, *args):
    return runner.invoke(app, ["score", "--model", str(model), *map(str, args)])


def json_records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def check_definitions(record: dict) -> None:
    tokens = record["tokens"]
    assert tokens and tokens[-1]["token"] == "</s>"
    for token in tokens:
        assert 0 < token["prob"] <= 1
        assert token["nll"] == pytest.approx(-math.log(token["prob"]), rel=1e-9, abs=1e-12)
        assert token["rank"] >= 1
        assert (token["rank"] == 1) == (token["token"] == token["argmax"])
    nlls = [token["nll"] for token in tokens]
    assert record["cross_entropy"] == pytest.approx(sum(nlls) / len(nlls), rel=1e-12)
    assert record["perplexity"] == pytest.approx(math.exp(record["cross_entropy"]), rel=1e-12)


def test_json_follows_the_definitions(trained_model):
    [record] = json_records(score(trained_model, "--src", " 我有三本书。", "--ref", "I  have three books.", "--json"))
    assert set(record) == {"source", "reference", "tokens", "cross_entropy", "perplexity", "segmentation_differs"}
    assert record["source"] == " 我有三本书。" and record["reference"] == "I  have three books."  # as given
    _, tokenizer, _ = load_model_folder(trained_model)
    expected = tokenizer.encode_tgt(normalize("I  have three books."))  # normalized, then encoded
    assert [t["token"] for t in record["tokens"]] == [tokenizer.tgt_piece(i) for i in expected]
    assert record["segmentation_differs"] is False
    check_definitions(record)


def test_force_decode_against_the_full_distribution(trained_model):
    model, tokenizer, _ = load_model_folder(trained_model)
    pairs = tiny_pairs()[:5]
    src_ids = [tokenizer.encode_src(normalize(s)) for s, _ in pairs]
    tgt_ids = [tokenizer.encode_tgt(normalize(t)) for _, t in pairs]
    alone = force_decode(model, src_ids, tgt_ids, batch_size=1)
    together = force_decode(model, src_ids, tgt_ids, batch_size=3)  # padding on both sides
    with torch.no_grad():
        for src, tgt, result, batched in zip(src_ids, tgt_ids, alone, together):
            src_t = torch.tensor([src])
            log_probs = model(src_t, src_t == 0, torch.tensor([[BOS_ID] + tgt[:-1]]))[0]
            torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(len(tgt)))
            assert result.tokens == tgt and tgt[-1] == EOS_ID
            for position, token in enumerate(tgt):
                row = log_probs[position]
                assert result.token_log_probs[position] == pytest.approx(float(row[token]), abs=1e-6)
                # ties broken by id, as argmax breaks them: a tied token with a lower id ranks ahead
                ahead = (row > row[token]) | ((row == row[token]) & (torch.arange(len(row)) < token))
                assert result.ranks[position] == 1 + int(ahead.sum())
                assert result.argmax[position] == int(row.argmax())
            torch.testing.assert_close(torch.tensor(batched.token_log_probs), torch.tensor(result.token_log_probs), atol=1e-5, rtol=1e-5)
            assert result.cross_entropy == pytest.approx(-sum(result.token_log_probs) / len(tgt))


def test_forced_greedy_output_gives_greedy_probabilities(trained_model):
    model, tokenizer, _ = load_model_folder(trained_model)
    src_ids = [tokenizer.encode_src(normalize(s)) for s in SOURCES]
    hyps = greedy_decode(model, src_ids)
    for hyp, result in zip(hyps, force_decode(model, src_ids, [h.tokens for h in hyps])):
        assert result.ranks == [1] * len(hyp.tokens) and result.argmax == hyp.tokens
        assert [math.exp(lp) for lp in result.token_log_probs] == pytest.approx([math.exp(lp) for lp in hyp.token_log_probs], rel=1e-5)


@pytest.fixture(scope="module")
def steered_model(trained_model, tmp_path_factory):
    """The fixture's tokenizer with a model set by hand to answer "have" then </s>.

    The 20-step fixture model only says "▁ ▁ ▁ …", which never re-encodes to itself; this
    one's answer does. Each target embedding points along its own axis and the output row
    of the token that should follow reads that axis; the sub-layers are scaled down (not
    off) so that attention, the cache and padding still take part in every number.
    """
    _, tokenizer, _ = load_model_folder(trained_model)
    answer = tokenizer.encode_tgt("have")
    before = [BOS_ID] + answer[:-1]
    assert len(set(before)) == len(before), "each piece must follow its own predecessor"
    vocab = tokenizer.tgt_vocab_size
    torch.manual_seed(7)
    config = ModelConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=16, n_heads=2, d_ff=32, n_layers=1,
        dropout=0.0, tie_embeddings=False, max_positions=128,
    )
    model = Transformer(config)
    with torch.no_grad():
        for layer in model.decoder:
            for linear in (layer.self_attn.out_proj, layer.cross_attn.out_proj, layer.feed_forward.contract):
                linear.weight.mul_(0.05)
        for axis, (previous, token) in enumerate(zip(before, answer)):
            model.tgt_embed.weight[previous] = 0.0
            model.tgt_embed.weight[previous, axis] = 100.0
            model.project.weight[token, axis] += 1.5  # p around 0.5: not a foregone conclusion
    folder = tmp_path_factory.mktemp("steered") / "model"
    save_model_folder(folder, model, tokenizer, {})
    return folder


def test_score_of_translation_equals_translate_steps(steered_model):
    sources = SOURCES[:2]
    translated = json_records(runner.invoke(app, ["translate", "--model", str(steered_model), "--json", *sources]))
    for source, record in zip(sources, translated):
        steps = record["steps"]
        assert record["translation"] == "have" and steps[-1]["token"] == "</s>"
        assert record["segmentation_differs"] is False
        assert 0.05 < min(step["prob"] for step in steps) < 0.99
        [scored] = json_records(score(steered_model, "--src", source, "--ref", record["translation"], "--json"))
        assert [t["token"] for t in scored["tokens"]] == [s["token"] for s in steps]
        assert [t["prob"] for t in scored["tokens"]] == pytest.approx([s["prob"] for s in steps], rel=1e-5)
        assert all(t["rank"] == 1 for t in scored["tokens"])


def test_segmentation_differs_flags_a_byte_spelling(trained_model):
    _, tokenizer, _ = load_model_folder(trained_model)
    plain = tokenizer.encode_tgt("I have three books.")
    assert not segmentation_differs(tokenizer, plain)
    spelled = tokenizer.tgt.encode("I have three books") + [tokenizer.tgt.piece_to_id("<0x2E>"), EOS_ID]
    assert tokenizer.decode_tgt(spelled) == "I have three books."
    assert segmentation_differs(tokenizer, spelled)


def test_tsv_moses_and_columns_agree_and_totals(trained_model, tmp_path):
    pairs = tiny_pairs()[:3]
    tsv = write_tsv(tmp_path / "pairs.tsv", pairs)
    swapped = write_tsv(tmp_path / "swapped.tsv", [(t, s) for s, t in pairs])
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "ref.txt").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    result = score(trained_model, "--file", tsv, "--json")
    records = json_records(result)
    assert len(records) == 3 and [r["source"] for r in records] == [s for s, _ in pairs]
    for record in records:
        check_definitions(record)
    assert json_records(score(trained_model, "--file", swapped, "--src-col", 2, "--tgt-col", 1, "--json")) == records
    moses = score(trained_model, "--src-file", tmp_path / "src.txt", "--ref-file", tmp_path / "ref.txt", "--json")
    assert json_records(moses) == records
    nlls = [t["nll"] for r in records for t in r["tokens"]]
    corpus_ce = sum(nlls) / len(nlls)  # token-weighted, not a mean of sentence CEs
    assert f"3 pairs, {len(nlls)} tokens: cross-entropy {corpus_ce:.4f}" in result.stderr
    table = score(trained_model, "--file", tsv)
    assert table.exit_code == 0, table.output
    assert "corpus" in table.stdout and f"{corpus_ce:.4f} nats/token" in table.stdout
    assert f"{math.exp(corpus_ce):.3f}" in table.stdout


def test_table_shows_each_token(trained_model):
    result = score(trained_model, "--src", "我有三本书。", "--ref", "I have three books.")
    assert result.exit_code == 0, result.output
    [record] = json_records(score(trained_model, "--src", "我有三本书。", "--ref", "I have three books.", "--json"))
    assert "</s>" in result.stdout and "rank" in result.stdout and "argmax" in result.stdout
    assert f"{record['tokens'][0]['prob']:.4f}" in result.stdout
    flat = " ".join(result.stdout.split())  # the caption wraps at the table's width
    assert f"perplexity = {record['perplexity']:.3f}" in flat
    assert "corpus" not in result.stdout  # one sentence: no totals


@pytest.mark.parametrize(
    "args, message",
    [
        (["--src", "你好"], "--src needs --ref"),
        (["--ref", "Hello"], "--ref needs --src"),
        ([], "nothing to score"),
        (["--src-file", "a.txt"], "needs both --src-file and --ref-file"),
        (["--file", "missing.tsv"], "missing.tsv: no such file"),
        (["--src", "你好", "--ref", "Hello", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_options_are_one_line(trained_model, args, message):
    result = score(trained_model, *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("bad_line", ["只有一列", "我有三本书。" * 200 + "\tI have three books."], ids=["one-column", "too-long"])
def test_bad_file_line_names_file_and_line_and_prints_nothing_before(trained_model, tmp_path, bad_line):
    bad = tmp_path / "bad.tsv"
    # The bad line comes after more than a batch of good ones: none of them may print.
    bad.write_text("我有三本书。\tI have three books.\n" * 5 + bad_line + "\n", encoding="utf-8")
    result = score(trained_model, "--file", bad, "--json", "--batch-size", "2")
    assert result.exit_code == 1
    assert f"{bad}:6" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_brackets_in_text_are_not_markup(trained_model):
    result = score(trained_model, "--src", "[/x]我有三书。", "--ref", "[/b] I have [1] book.")
    assert result.exit_code == 0, result.output
    assert "[/x]我有三书。 → [/b] I have [1] book." in result.stdout


def test_control_characters_in_a_title_are_shown_not_sent_to_the_terminal(trained_model):
    from tt.cli.consoles import printable

    assert printable("你\x1b]0;pwned\x07好 → Hi\x7f") == "你\\x1b]0;pwned\\x07好 → Hi\\x7f"
    result = CliRunner().invoke(app, ["score", "--model", str(trained_model), "--src", "我\x1b[2J有", "--ref", "I\x1b[31m have"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "我\\x1b[2J有 → I\\x1b[31m have" in result.stdout
