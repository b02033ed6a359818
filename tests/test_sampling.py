"""Sampling: the filters keep exactly the tokens they should, seeds repeat, scores are the model's."""

from collections import Counter

import pytest
import torch

from tt.model.decode import greedy_decode
from tt.model.sampling import Sampler
from tt.model.transformer import Transformer


def draws(sampler, log_probs, n=400):
    return Counter(int(sampler(log_probs)) for _ in range(n))


LOG_PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()


def test_top_k_keeps_only_the_k_most_probable():
    assert set(draws(Sampler(top_k=2, seed=0), LOG_PROBS)) == {0, 1}


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert set(draws(Sampler(top_p=0.7, seed=0), LOG_PROBS)) == {0, 1}  # 0.5 < 0.7 ≤ 0.8
    assert set(draws(Sampler(top_p=0.4, seed=0), LOG_PROBS)) == {0}


def test_low_temperature_approaches_greedy_and_frequencies_follow_p():
    assert set(draws(Sampler(temperature=0.01, seed=0), LOG_PROBS)) == {0}
    counts = draws(Sampler(seed=0), LOG_PROBS, n=4000)
    assert counts[0] / 4000 == pytest.approx(0.5, abs=0.04)
    assert counts[3] / 4000 == pytest.approx(0.05, abs=0.02)


def test_without_a_seed_each_sampler_draws_anew():
    flat = torch.zeros(1, 1000)  # 1,000 equally likely tokens: 30 equal draws by chance has p = 10⁻⁹⁰
    assert draws(Sampler(), flat, n=30) != draws(Sampler(), flat, n=30)
    assert draws(Sampler(seed=4), flat, n=30) == draws(Sampler(seed=4), flat, n=30)


def test_seeded_samples_repeat_and_scores_are_the_models(tiny_config):
    torch.manual_seed(2)
    model = Transformer(tiny_config).eval()
    sources = [[5, 6, 7, 3], [8, 9, 3]]
    first = greedy_decode(model, sources, sampler=Sampler(seed=7))
    again = greedy_decode(model, sources, sampler=Sampler(seed=7))
    assert [h.tokens for h in first] == [h.tokens for h in again]
    for row, hyp in zip(sources, first):
        src = torch.tensor([row])
        tgt_in = torch.tensor([[2] + hyp.tokens[:-1]])
        log_probs = model(src, src == 0, tgt_in)[0]
        expected = log_probs.gather(1, torch.tensor(hyp.tokens)[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(hyp.token_log_probs), expected, atol=1e-5, rtol=1e-5)


def test_cli_samples_lines_and_json(trained_model):
    from typer.testing import CliRunner

    from tt.cli.main import app

    runner = CliRunner()
    args = ["translate", "--model", str(trained_model), "--sample", "--n", "3", "--seed", "5", "我有三本书。", "你有猫吗？"]
    first, again = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout  # seeded
    rows = [line.split("\t") for line in first.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 0, 1, 1, 1]
    assert all(float(r[1]) <= 0 for r in rows)
    for options in (["--sample", "--n", "3"], ["--beam", "3", "--n-best", "3"]):  # an empty line still gets its 3 lines
        piped = runner.invoke(app, ["translate", "--model", str(trained_model), *options], input="\n我有三本书。\n")
        assert [line.split("\t")[0] for line in piped.stdout.splitlines()] == ["0"] * 3 + ["1"] * 3, piped.output
    as_json = runner.invoke(app, [*args[:-2], "--json", "我有三本书。"])
    record = __import__("json").loads(as_json.stdout)
    assert len(record["samples"]) == 3 and all(s["log_prob"] <= 0 for s in record["samples"])
    both = runner.invoke(app, ["translate", "--model", str(trained_model), "--sample", "--beam", "3", "我"])
    assert both.exit_code == 1 and "not both" in both.stderr


def test_cli_prefix_forces_the_start(trained_model):
    import json

    from typer.testing import CliRunner

    from tt.cli.main import app

    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--json", "--prefix", "I have", "我有三本书。"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["translation"].startswith("I have")
    from tt.model.checkpoint import load_model_folder

    _, tokenizer, _ = load_model_folder(trained_model)
    forced = [tokenizer.tgt_piece(i) for i in tokenizer.tgt.encode("I have")]
    assert [s["token"] for s in record["steps"][: len(forced)]] == forced


def test_cli_step_mode_picks_and_compares(trained_model):
    from typer.testing import CliRunner

    from tt.cli.main import app

    # Always press Enter: the hand-decoded translation is greedy's, at no cost.
    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--step", "--top-k", "3", "我有三本书。"], input="\n" * 80)
    assert result.exit_code == 0, result.output
    greedy = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "我有三本书。"])
    assert result.stdout.splitlines()[-1] == greedy.stdout.splitlines()[0]
    assert "(+0.000)" in result.stderr


def test_step_mode_asks_again_after_an_answer_that_is_no_choice(trained_model):
    from rich.console import Console

    from tt.cli.step_command import step_through
    from tt.model.translator import Translator

    translator = Translator(trained_model)
    answers, asked = iter(["x", "9", "0", "2"]), []

    def ask(prompt):
        asked.append(prompt)
        return next(answers, "")

    console = Console(record=True, width=200)
    translation, chosen, greedy = step_through(translator, "我有三本书。", 3, ask, console)
    assert asked[:4] == ["pick 1–3 (Enter = 1): "] * 4  # three refusals, then the first step's pick
    shown = console.export_text()
    assert "'x' is not one of 1–3" in shown and "'9' is not one of 1–3" in shown and "'0' is not one of 1–3" in shown
    assert chosen < greedy  # the second candidate at step 1, never the first by default


def test_step_mode_with_no_sentence_is_an_error(trained_model):
    from typer.testing import CliRunner

    from tt.cli.main import app

    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--step"], input="")
    assert result.exit_code == 1 and result.stderr.strip().endswith("error: --step: no sentence to decode")
    assert result.stdout == ""


def test_temperature_or_seed_alone_turns_sampling_on(trained_model):
    from typer.testing import CliRunner

    from tt.cli.main import app

    def run(*args):
        result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), *args, "我有三本书。", "你有两只猫吗？"])
        assert result.exit_code == 0, result.output
        return result.stdout

    greedy = run()
    hot = [run("--temperature", "50", "--seed", str(seed)) for seed in range(3)]
    assert all(output != greedy for output in hot)  # at T = 50 the draws are close to uniform
    assert run("--seed", "5") == run("--seed", "5") == run("--sample", "--seed", "5")
    refused = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--temperature", "2", "--beam", "3", "好"])
    assert refused.exit_code == 1 and "choose sampling" in refused.stderr


def test_step_mode_enter_never_picks_what_greedy_never_picks(trained_model):
    from rich.console import Console

    from tt.cli.step_command import step_through
    from tt.model.translator import Translator

    translator = Translator(trained_model)
    model = translator.model
    real = model.log_probs
    boost = torch.zeros(model.config.tgt_vocab_size)
    boost[[model.config.pad_id, model.config.start_id]] = torch.tensor([30.0, 29.0])

    def favour_unwanted(hidden):  # <pad> and <s> the most probable at every step
        return (real(hidden) + boost).log_softmax(-1)

    model.log_probs = favour_unwanted
    translation, chosen, greedy = step_through(translator, "我有三本书。", 3, lambda prompt: "", Console(quiet=True))
    # Enter all the way: greedy's tokens and greedy's log p (taking <pad> would cost ~nothing)
    assert chosen == pytest.approx(greedy, abs=1e-3) and greedy < -20


def test_cli_step_mode_caps_top_k_and_cuts_a_long_source(trained_model):
    from typer.testing import CliRunner

    from tt.cli.main import app
    from tt.model.checkpoint import load_model_folder

    model, _, _ = load_model_folder(trained_model)
    vocab, positions = model.config.tgt_vocab_size, model.config.max_positions
    command = ["translate", "--model", str(trained_model), "--step"]
    result = CliRunner().invoke(app, [*command, "--top-k", str(vocab + 50), "我有三本书。"], input="\n" * 80)
    assert result.exit_code == 0, result.output
    assert f"pick 1–{vocab - 2} " in result.stderr  # no more choices than the vocabulary has, <pad> and <s> left out
    long_line = "我有三本书。" * positions  # far more pieces than the encoder has positions
    result = CliRunner().invoke(app, [*command, "--top-k", "1", long_line], input="\n" * 600)
    assert result.exit_code == 0, result.output
    assert f"cut to the model's {positions:,}" in result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_cli_step_mode_puts_the_model_where_device_says(trained_model, monkeypatch):
    from typer.testing import CliRunner

    import tt.cli.step_command as step_command
    from tt.cli.main import app

    devices = []

    class Recording(step_command.Translator):
        def __init__(self, folder, device="cpu"):
            devices.append(device)
            super().__init__(folder, device)

    monkeypatch.setattr(step_command, "Translator", Recording)
    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--step", "--device", "auto", "我有三本书。"], input="\n" * 80)
    assert result.exit_code == 0, result.output
    assert devices == ["auto"]  # --device reaches the model, as in every other translate mode
