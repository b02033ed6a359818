"""`tt train` through typer's runner: outputs, limits, resume, and bad input."""

import json
import re
import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tt.cli.main import app
from tt.model.checkpoint import read_training_state
from conftest import TINY_MODEL_OPTIONS, tiny_pairs, write_tsv

runner = CliRunner()


def train(*args):
    return runner.invoke(app, ["train", *map(str, args), *TINY_MODEL_OPTIONS])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_metrics_lines_have_the_promised_fields(trained_model):
    lines = [json.loads(line) for line in (trained_model / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "loss" in line]
    assert train_lines and train_lines[-1]["step"] == 20
    for line in train_lines:
        assert {"step", "loss", "lr", "tokens", "elapsed_s", "tokens_per_s"} <= set(line)
        assert line["loss"] == pytest.approx(line["kl"] + line["entropy_floor"], rel=1e-6)
        assert line["ppl"] == pytest.approx(math.exp(line["nll"]), rel=1e-6)
    assert [line["tokens"] for line in train_lines] == sorted(line["tokens"] for line in train_lines)


def test_existing_model_is_refused(trained_model):
    result = train("--out", trained_model, "--max-steps", "1")
    assert_one_line_error(result, "--resume", "--overwrite")


def test_resume_at_the_limit_says_so_and_a_higher_limit_continues(tmp_path, corpus_file):
    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "6").exit_code == 0
    again = runner.invoke(app, ["train", "--resume", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.stderr
    more = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "9"])
    assert more.exit_code == 0, more.output
    assert json.loads((out / "config.json").read_text())["step"] == 9
    state, _ = read_training_state(out)
    assert state["step"] == 9


def test_resume_equals_uninterrupted_training(tmp_path, corpus_file):
    straight, split = tmp_path / "straight", tmp_path / "split"
    # No cool-down: with one, the first half ends its own schedule at its own limit. (The
    # interrupt tests resume runs with a cool-down to the same limit, bit for bit.)
    assert train(corpus_file, "--out", straight, "--max-steps", "8", "--dropout", "0.1", "--cooldown", "0").exit_code == 0
    assert train(corpus_file, "--out", split, "--max-steps", "4", "--dropout", "0.1", "--cooldown", "0").exit_code == 0
    assert runner.invoke(app, ["train", "--resume", "--out", str(split), "--max-steps", "8"]).exit_code == 0
    # Compare tensors, not bytes: which name a tied matrix is stored under may vary.
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(split / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def logged_learning_rates(out) -> dict[int, float]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line["lr"] for line in lines if "lr" in line}


def test_cooldown_takes_the_learning_rate_linearly_to_zero_over_the_last_share_of_the_steps(tmp_path, corpus_file):
    out = tmp_path / "model"
    # --warmup 5 (TINY_MODEL_OPTIONS), then 1/√step; over the last half of 20 steps, a linear fall.
    result = train(corpus_file, "--out", out, "--max-steps", "20", "--decay", "rsqrt", "--cooldown", "0.5", "--log-every", "1", "--lr", "0.01")
    assert result.exit_code == 0, result.output
    rates = logged_learning_rates(out)
    assert sorted(rates) == list(range(1, 21))
    for step, lr in rates.items():
        plain = 0.01 * min(step / 5, math.sqrt(5 / step))
        done = (step - 1) / 20  # the share of the run done before this step
        assert lr == pytest.approx(plain * min(1.0, (1 - done) / 0.5), rel=1e-9), step
    assert rates[10] == pytest.approx(0.01 * math.sqrt(5 / 10))  # untouched before the last half
    assert rates[20] == pytest.approx(0.01 * math.sqrt(5 / 20) * 0.1)  # one step from the end


def test_constant_decay_holds_the_peak_from_warm_up_to_the_cool_down(tmp_path, corpus_file):
    out = tmp_path / "model"
    # --warmup 5 (TINY_MODEL_OPTIONS), then 0.01 held; over the last half of 20 steps, a linear fall.
    result = train(corpus_file, "--out", out, "--max-steps", "20", "--decay", "constant", "--cooldown", "0.5", "--log-every", "1", "--lr", "0.01")
    assert result.exit_code == 0, result.output
    rates = logged_learning_rates(out)
    assert [rates[step] for step in range(1, 6)] == pytest.approx([0.002, 0.004, 0.006, 0.008, 0.01])
    assert [rates[step] for step in range(5, 12)] == pytest.approx([0.01] * 7)  # held, where rsqrt would fall
    for step in range(12, 21):
        assert rates[step] == pytest.approx(0.01 * (1 - (step - 1) / 20) / 0.5), step
    assert json.loads((out / "config.json").read_text())["train"]["decay"] == "constant"


def test_an_unknown_decay_is_refused_in_one_line(tmp_path, corpus_file):
    result = train(corpus_file, "--out", tmp_path / "model", "--max-steps", "2", "--decay", "cosine")
    assert_one_line_error(result, "--decay")


def test_cooldown_follows_the_clock_when_the_limit_is_time(tmp_path, corpus_file):
    out = tmp_path / "model"
    result = train(corpus_file, "--out", out, "--max-time", "5s", "--cooldown", "1", "--log-every", "1", "--lr", "0.01")
    assert result.exit_code == 0, result.output
    rates = logged_learning_rates(out)
    last = max(rates)
    plain = 0.01 * min(last / 5, math.sqrt(5 / last))
    # The run ends when 5 s are used up: its last steps take a small share of the plain rate.
    assert rates[last] < 0.3 * plain, (last, rates[last], plain)
    assert rates[last] < rates[max(1, last // 2)]


def test_resume_refuses_changed_options(trained_model):
    result = runner.invoke(app, ["train", "--resume", "--out", str(trained_model), "--d-model", "32"])
    assert_one_line_error(result, "--d-model")


def test_overwrite_replaces(tmp_path, corpus_file):
    out = tmp_path / "model"
    assert train(corpus_file, "--out", out, "--max-steps", "2").exit_code == 0
    result = train(corpus_file, "--out", out, "--max-steps", "3", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["step"] == 3


def test_bad_column_names_file_and_line_and_writes_nothing(tmp_path):
    corpus = tmp_path / "bad.tsv"
    corpus.write_text("你好\tHello\n世界\n", encoding="utf-8")
    out = tmp_path / "model"
    assert_one_line_error(train(corpus, "--out", out), f"{corpus}:2")
    assert not out.exists()


def test_invalid_utf8_names_the_line(tmp_path):
    corpus = tmp_path / "bad.tsv"
    corpus.write_bytes("你好\tHello\n".encode() + b"\xff\xfe\tbad\n")
    assert_one_line_error(train(corpus, "--out", tmp_path / "m"), f"{corpus}:2", "UTF-8")
    assert not (tmp_path / "m").exists()


def test_misaligned_files(tmp_path):
    src = tmp_path / "a.zh"
    tgt = tmp_path / "a.en"
    src.write_text("一\n二\n三\n", encoding="utf-8")
    tgt.write_text("one\ntwo\n", encoding="utf-8")
    assert_one_line_error(train("--src", src, "--tgt", tgt, "--out", tmp_path / "m"), f"{tgt}:3")


def test_missing_and_empty_corpus(tmp_path):
    assert_one_line_error(train(tmp_path / "nope.tsv", "--out", tmp_path / "m"), "nope.tsv", "no such file")
    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    assert_one_line_error(train(empty, "--out", tmp_path / "m"), "empty.tsv", "no usable pairs")
    assert not (tmp_path / "m").exists()


def test_config_file_and_command_line_precedence(tmp_path, corpus_file):
    config = tmp_path / "run.toml"
    config.write_text('max-steps = 2\nlayers = 2\nlabel_smoothing = 0.2\n', encoding="utf-8")
    out = tmp_path / "model"
    result = train(corpus_file, "--out", out, "--config", config, "--layers", "1")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["model"]["n_layers"] == 1  # the command line wins
    assert record["train"]["label_smoothing"] == 0.2  # the file fills the rest
    assert record["step"] == 2


def test_config_file_with_unknown_option(tmp_path, corpus_file):
    config = tmp_path / "run.json"
    config.write_text('{"layerz": 2}', encoding="utf-8")
    assert_one_line_error(train(corpus_file, "--out", tmp_path / "m", "--config", config), "run.json", "layerz")


def test_bad_option_values(tmp_path, corpus_file):
    assert_one_line_error(train(corpus_file, "--out", tmp_path / "m", "--max-time", "soon"), "--max-time")
    result = runner.invoke(app, ["train", str(corpus_file), "--out", str(tmp_path / "m"), "--heads", "5"])
    assert_one_line_error(result, "--heads")  # neither 192 (tiny) nor 256 (small) is divisible by 5
    assert not (tmp_path / "m").exists()


def train_letting_tt_choose_the_vocabularies(*args):
    options = [option for option in TINY_MODEL_OPTIONS if option != "--joint-vocab"]
    return runner.invoke(app, ["train", *map(str, args), *options])


def test_side_sizes_need_separate_vocabularies_and_room_for_bytes(tmp_path, corpus_file):
    assert_one_line_error(train(corpus_file, "--out", tmp_path / "m", "--tgt-vocab-size", "400"), "--tgt-vocab-size", "--joint-vocab")
    too_small = train_letting_tt_choose_the_vocabularies(corpus_file, "--out", tmp_path / "m", "--separate-vocab", "--src-vocab-size", "299")
    assert_one_line_error(too_small, "--src-vocab-size", "300")
    assert not (tmp_path / "m").exists()


def test_chinese_english_pairs_get_one_vocabulary_per_language_and_the_summary_says_why(tmp_path, corpus_file):
    result = train_letting_tt_choose_the_vocabularies(corpus_file, "--out", tmp_path / "m", "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert "characters in common" in result.stderr and "one vocabulary per language" in result.stderr
    assert (tmp_path / "m" / "tokenizer.tgt.model").exists() and not (tmp_path / "m" / "tokenizer.model").exists()


def test_separate_vocabularies_of_two_sizes_train_and_resume(tmp_path, corpus_file):
    """The target vocabulary sets the output layer's width, which shares its matrix with the target embedding."""
    from tt.model.checkpoint import load_model_folder

    out = tmp_path / "m"
    result = train_letting_tt_choose_the_vocabularies(corpus_file, "--out", out, "--vocab-size", "500", "--tgt-vocab-size", "320", "--max-steps", "2")
    assert result.exit_code == 0, result.output
    model, tokenizer, _ = load_model_folder(out)
    assert model.config.tgt_vocab_size == tokenizer.tgt_vocab_size <= 320  # 80 pairs support little more
    assert model.config.src_vocab_size == tokenizer.src_vocab_size
    assert model.project.weight is model.tgt_embed.weight and model.src_embed.weight is not model.tgt_embed.weight
    resumed = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "3", "--tgt-vocab-size", "320"])
    assert resumed.exit_code == 0, resumed.output
    assert read_training_state(out)[0]["step"] == 3


def test_jsonl_and_moses_pairs_train(tmp_path):
    pairs = tiny_pairs()[:30]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"src": s, "tgt": t}, ensure_ascii=False) + "\n" for s, t in pairs), encoding="utf-8")
    assert train(jsonl, "--out", tmp_path / "j", "--max-steps", "1").exit_code == 0
    (tmp_path / "c.zh").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "c.en").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    result = train("--src", tmp_path / "c.zh", "--tgt", tmp_path / "c.en", "--out", tmp_path / "m", "--max-steps", "1")
    assert result.exit_code == 0, result.output


def test_dev_file_is_removed_from_train_and_evaluated(tmp_path):
    pairs = tiny_pairs()
    corpus = write_tsv(tmp_path / "train.tsv", pairs)
    dev = write_tsv(tmp_path / "dev.tsv", pairs[:5])
    out = tmp_path / "m"
    result = train(corpus, "--dev", dev, "--out", out, "--max-steps", "3")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["summary"]["cleaning"]["dropped: also in dev"] == 5
    dev_lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if "dev_loss" in l]
    assert dev_lines and dev_lines[-1]["dev_ppl"] == pytest.approx(math.exp(dev_lines[-1]["dev_loss"]))


def test_time_limit_stops(tmp_path, corpus_file):
    result = train(corpus_file, "--out", tmp_path / "m", "--max-time", "3s")
    assert result.exit_code == 0, result.output
    assert "max-time" in result.stderr


@pytest.fixture
def split_corpus(tmp_path):
    """The tiny corpus cut in two files: 72 pairs to train on, 8 disjoint dev pairs."""
    pairs = tiny_pairs()
    return write_tsv(tmp_path / "train.tsv", pairs[8:]), write_tsv(tmp_path / "dev.tsv", pairs[:8])


def test_best_checkpoint_and_early_stopping(tmp_path, split_corpus):
    corpus, dev = split_corpus
    out = tmp_path / "m"
    # A 20-step model scores BLEU 0 at every evaluation: the first stays the best, and
    # with --patience 2 training stops at the third evaluation.
    result = train(corpus, "--dev", dev, "--out", out, "--max-steps", "50", "--dev-every", "3", "--patience", "2")
    assert result.exit_code == 0, result.output
    assert "stopped early" in result.stderr
    record = json.loads((out / "config.json").read_text())
    assert record["step"] == 9 and record["best"]["step"] == 3
    best = load_file(str(out / "model.safetensors"))
    latest = load_file(str(out / "train_state.safetensors"))
    assert any(not torch.equal(best[name], latest[f"model.{name}"]) for name in best if f"model.{name}" in latest)
    bleu_lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if "dev_bleu" in l]
    assert [line["step"] for line in bleu_lines] == [3, 6, 9]


def test_a_finished_cool_down_keeps_the_last_weights(tmp_path, split_corpus):
    corpus, dev = split_corpus
    out = tmp_path / "m"
    # A few steps score BLEU 0 at every evaluation, so the BLEU rule alone keeps the first
    # (step 2). The cool-down runs its course over the 8 steps: the last weights are kept.
    result = train(corpus, "--dev", dev, "--out", out, "--max-steps", "8", "--dev-every", "2", "--cooldown", "0.5")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["best"]["step"] == 8 and record["best"]["landed"]["step"] == 2, record["best"]
    kept = load_file(str(out / "model.safetensors"))
    latest = load_file(str(out / "train_state.safetensors"))
    assert all(torch.equal(kept[name], latest[f"model.{name}"]) for name in kept if f"model.{name}" in latest)
    assert "where the cool-down landed" in " ".join(result.stderr.split())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["passed_over_step"] for line in lines if line.get("kept") == "landed"] == [2]

    # Without a cool-down there is nothing to land: the first best BLEU stays.
    plain = tmp_path / "plain"
    result = train(corpus, "--dev", dev, "--out", plain, "--max-steps", "8", "--dev-every", "2", "--cooldown", "0")
    assert result.exit_code == 0, result.output
    assert json.loads((plain / "config.json").read_text())["best"]["step"] == 2


def test_an_earlier_checkpoint_stays_only_when_better_on_bleu_and_loss_both():
    from tt.model.selection import earlier_is_better

    last = {"dev_bleu": 30.0, "dev_loss": 1.70}
    assert earlier_is_better({"dev_bleu": 31.0, "dev_loss": 1.65}, last)  # over-fitting: both worse now
    assert not earlier_is_better({"dev_bleu": 31.0, "dev_loss": 1.75}, last)  # a lucky BLEU draw
    assert not earlier_is_better({"dev_bleu": 29.0, "dev_loss": 1.65}, last)
    assert not earlier_is_better({"dev_bleu": 31.0}, last)  # recorded before dev loss was kept


def test_init_from_starts_with_the_given_weights(trained_model, tmp_path, corpus_file):
    out = tmp_path / "tuned"
    result = runner.invoke(app, ["train", str(corpus_file), "--out", str(out), "--init-from", str(trained_model), "--max-steps", "0"])
    assert result.exit_code == 0, result.output
    assert (out / "tokenizer.model").read_bytes() == (trained_model / "tokenizer.model").read_bytes()
    a, b = load_file(str(out / "model.safetensors")), load_file(str(trained_model / "model.safetensors"))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_init_from_refuses_another_shape_applies_dropout_and_resumes_with_its_first_command(trained_model, tmp_path, corpus_file):
    parent = json.loads((trained_model / "config.json").read_text())["model"]
    out = tmp_path / "tuned"
    first = ["train", str(corpus_file), "--out", str(out), "--init-from", str(trained_model), "--threads", "1"]
    refused = runner.invoke(app, [*first, "--max-steps", "2", "--d-model", str(parent["d_model"] * 2), "--vocab-size", "500"])
    assert_one_line_error(refused, f"--init-from {trained_model}", "leave out --d-model, --vocab-size")
    assert not out.exists()
    same_shape = runner.invoke(app, [*first, "--max-steps", "2", "--d-model", str(parent["d_model"]), "--dropout", "0.3"])
    assert same_shape.exit_code == 0, same_shape.output
    record = json.loads((out / "config.json").read_text())
    assert record["model"]["dropout"] == 0.3 and record["init_from"] == str(trained_model.resolve())
    assert {k: v for k, v in record["model"].items() if k != "dropout"} == {k: v for k, v in parent.items() if k != "dropout"}
    again = runner.invoke(app, [*first, "--resume", "--max-steps", "4"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "config.json").read_text())["step"] == 4


def test_average_of_last_checkpoints_is_tried(tmp_path, split_corpus):
    corpus, dev = split_corpus
    out = tmp_path / "m"
    result = train(corpus, "--dev", dev, "--out", out, "--max-steps", "8", "--dev-every", "2", "--average-last", "3")
    assert result.exit_code == 0, result.output
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    averaged = [l for l in lines if "dev_bleu_averaged" in l]
    assert len(averaged) == 1 and averaged[0]["averaged_last"] == 3


def test_presets_set_sizes_and_options_still_win(tmp_path, corpus_file):
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", str(corpus_file), "--out", str(out), "--preset", "tiny", "--layers", "1", "--max-steps", "1", "--d-model", "32", "--heads", "2", "--ff", "64"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["train"]["learning_rate"] == 2e-3 and record["train"]["decay"] == "constant"  # from the preset
    assert record["model"]["n_layers"] == 1  # the option wins
    bad = runner.invoke(app, ["train", str(corpus_file), "--out", str(tmp_path / "x"), "--preset", "huge"])
    assert_one_line_error(bad, "--preset", "tiny")


def test_an_empty_dev_set_gives_its_reason_only_where_tt_chose_it(tmp_path, corpus_file, tiny_config):
    from rich.console import Console

    from tt.cli.train_report import summary_table
    from tt.data.clean import CleaningConfig
    from tt.data.corpus import CorpusSpec
    from tt.data.prepare import prepare
    from tt.data.prepared_folder import PrepareRequest
    from tt.data.tokenizer import TokenizerConfig
    from tt.model.transformer import Transformer

    request = PrepareRequest(CorpusSpec(path=str(corpus_file)), None, CleaningConfig(), TokenizerConfig(vocab_size=300), 3, dev_size=0)
    data = prepare(request, tmp_path / "prepared")

    def dev_row(automatic_dev: bool) -> str:
        console = Console(record=True, width=120)
        console.print(summary_table(data, Transformer(tiny_config), automatic_dev=automatic_dev))
        return next(line for line in console.export_text().splitlines() if "dev pairs" in line)

    assert "corpus under 1,000 pairs" in dev_row(True)  # 80 pairs: the automatic size is 0
    assert dev_row(False).strip("│ ").split() == ["dev", "pairs", "│", "none"]  # --dev-size 0: the user's choice, no reason to give


def test_the_default_preset_follows_where_training_runs(tmp_path, corpus_file, monkeypatch):
    from tt.cli import presets
    import tt.model.device as device

    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: False)  # a CPU without bfloat16 units
    assert presets.default_preset("cpu") == "tiny"
    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: True)  # one with AMX: measured, tiny wins there too
    assert presets.default_preset("cpu") == "tiny"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, as "auto" would find it
    assert presets.default_preset(None) == "small"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert presets.default_preset(None) == "tiny"
    # A run without --preset records the one it got, and says so; tiny's learning rate shows it was used
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", str(corpus_file), "--out", str(out), "--max-steps", "1", "--device", "cpu", "--precision", "fp32",
                                 "--layers", "1", "--d-model", "16", "--heads", "2", "--ff", "32"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["preset"] == "tiny" and record["train"]["learning_rate"] == 2e-3
    assert "preset tiny: the default for training on a CPU" in result.stderr


def test_in_a_pipe_each_metrics_line_is_a_plain_line(tmp_path, corpus_file):
    result = train(corpus_file, "--out", tmp_path / "model", "--max-steps", "6", "--log-every", "2")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ") and "KL+H(q)" in line]
    assert [line.split()[1] for line in lines] == ["2", "4", "6"], result.stderr
    assert all(re.search(r"CE \d+\.\d{3}  ppl [\d.]+  lr [\d.e+-]+  [\d,]+ tok/s  \d+:\d\d$", line) for line in lines), lines
    assert "━" not in result.stderr  # no bar drawn where it cannot be redrawn


def test_weight_decay_and_clip_norm_are_options_and_recorded(tmp_path, corpus_file):
    out = tmp_path / "model"
    result = train(corpus_file, "--out", out, "--max-steps", "2", "--weight-decay", "0.01", "--clip-norm", "0.5")
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "config.json").read_text())["train"]
    assert (recorded["weight_decay"], recorded["clip_norm"]) == (0.01, 0.5)


def test_the_model_card_names_a_dev_set_of_its_own():
    from tt.model.model_card import _corpus

    summary = {"train_pairs": 900, "dev_pairs": 50}
    own = _corpus({"corpus": {"path": "/data/train.tsv"}, "dev": {"path": "/data/dev.tsv"}, "summary": summary})
    assert own == "Corpus: train.tsv; 900 training pairs after cleaning; dev set: dev.tsv, 50 pairs."
    held = _corpus({"corpus": {"path": "/data/train.tsv"}, "dev": None, "summary": summary})
    assert held == "Corpus: train.tsv; 900 training pairs after cleaning, 50 held out for dev."
