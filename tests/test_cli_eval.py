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
    assert record["bleu"] == BLEU().corpus_score(hypotheses, [references]).score
    assert record["chrf"] == CHRF().corpus_score(hypotheses, [references]).score
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
