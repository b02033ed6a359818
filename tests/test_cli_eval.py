"""`tt eval` against sacrebleu called directly, on raw references."""

import json

from sacrebleu.metrics import BLEU, CHRF
from typer.testing import CliRunner

from tt.cli.main import app
from conftest import tiny_pairs, write_tsv

runner = CliRunner()


def test_eval_matches_sacrebleu_on_raw_references(trained_model, tmp_path):
    pairs = tiny_pairs()[:12]
    pairs[3] = (pairs[3][0], "  I  have ＴＷＯ books.  ")  # unnormalized reference stays as written
    test = write_tsv(tmp_path / "test.tsv", pairs)
    out = tmp_path / "hyp.txt"
    result = runner.invoke(app, ["eval", str(test), "--model", str(trained_model), "--json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    hypotheses = out.read_text(encoding="utf-8").splitlines()
    translated = runner.invoke(app, ["translate", "--model", str(trained_model), *[s for s, _ in pairs]])
    assert hypotheses == translated.stdout.splitlines()
    references = [t for _, t in pairs]
    assert record["bleu"] == round(BLEU().corpus_score(hypotheses, [references]).score, 4)
    assert record["chrf"] == round(CHRF().corpus_score(hypotheses, [references]).score, 4)
    assert record["sentences"] == 12
    assert record["signature"]["bleu"].startswith("nrefs:1")


def test_eval_table_and_beam(trained_model, tmp_path):
    test = write_tsv(tmp_path / "test.tsv", tiny_pairs()[:6])
    result = runner.invoke(app, ["eval", str(test), "--model", str(trained_model), "--beam", "3"])
    assert result.exit_code == 0, result.output
    assert "BLEU" in result.stdout and "beam 3" in result.stdout


def test_eval_bad_file(trained_model, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("只有一列\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", str(bad), "--model", str(trained_model)])
    assert result.exit_code == 1 and f"{bad}:1" in result.stderr


# ---- BLEU's tokenization follows the references' script


def test_bleu_tokenization_follows_the_script_of_the_references():
    from tt.model.evaluate import bleu_tokenization

    assert bleu_tokenization(["I have two books.", "Where is the station?"]) == "13a"
    assert bleu_tokenization(["我有两本书。", "车站在哪里？"]) == "zh"
    assert bleu_tokenization(["駅はどこですか。", "本を二冊持っています。"]) == "char"
    assert bleu_tokenization(["역이 어디예요?"]) == "char"
    assert bleu_tokenization(["The word 书 means book, and 车站 means station."]) == "13a"
    assert bleu_tokenization([]) == "13a"


def test_chinese_references_are_scored_by_character_words():
    """With 13a a Chinese sentence is one "word": one wrong character would score 0. Split as
    sacrebleu's zh tokenizer splits, most of the sentence still counts, as sacrebleu itself says."""
    from tt.model.evaluate import score_corpus

    hypotheses, references = ["我有两本书，他有三本书。"], ["我有两本书，她有三本书。"]
    scores = score_corpus(hypotheses, references)
    assert "tok:zh" in scores.bleu_signature
    assert scores.bleu == BLEU(tokenize="zh").corpus_score(hypotheses, [references]).score > 30
    assert BLEU().corpus_score(hypotheses, [references]).score < 1


def test_scoring_says_nothing_about_tokenized_periods(capsys, caplog):
    from tt.model.evaluate import score_corpus

    score_corpus(["I have a cat ."] * 120, ["I have a cat."] * 120)
    captured = capsys.readouterr()
    assert "detokenize" not in captured.out + captured.err + caplog.text


def test_eval_output_onto_the_test_set_is_refused_and_the_batch_size_bounded(trained_model, tmp_path):
    test = write_tsv(tmp_path / "test.tsv", tiny_pairs()[:5])
    src, tgt = tmp_path / "s.txt", tmp_path / "t.txt"
    src.write_text("".join(s + "\n" for s, _ in tiny_pairs()[:5]), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for _, t in tiny_pairs()[:5]), encoding="utf-8")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for args, output in ([[str(test)], test], [["--src", str(src), "--tgt", str(tgt)], tgt], [["--src", str(src), "--tgt", str(tgt)], src]):
        result = runner.invoke(app, ["eval", "--model", str(trained_model), *args, "--output", str(output)])
        assert result.exit_code == 1 and "which is being read; its text would be lost" in result.stderr, result.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    huge = runner.invoke(app, ["eval", "--model", str(trained_model), str(test), "--batch-size", "100000"])
    assert huge.exit_code == 1 and "--batch-size must be between 1 and 4,096" in huge.stderr


def test_empty_references_are_warned_about_and_a_blank_test_set_is_empty(trained_model, tmp_path):
    pairs = tiny_pairs()[:6]
    test = tmp_path / "test.tsv"
    test.write_text("".join(f"{s}\t{'' if i % 3 == 0 else t}\n" for i, (s, t) in enumerate(pairs)), encoding="utf-8")
    result = runner.invoke(app, ["eval", "--model", str(trained_model), str(test)])
    assert result.exit_code == 0, result.output
    assert f"warning: 2 of 6 references are empty, first at {test}:1" in result.stderr
    blank = tmp_path / "blank.tsv"
    blank.write_text("\n\n \n", encoding="utf-8")
    refused = runner.invoke(app, ["eval", "--model", str(trained_model), str(blank)])
    assert refused.exit_code == 1 and f"{blank}: the test set is empty" in refused.stderr
