"""tt.data.subword_sampling: the same sentences in other pieces, reproducibly, and what training does with them."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import TINY_MODEL_OPTIONS, tiny_pairs
from tt.cli.main import app
from tt.data.batches import BatchStream
from tt.data.subword_sampling import SubwordSampler, draw
from tt.data.tokenizer import EOS_ID, TokenizerConfig, train_tokenizer

runner = CliRunner()
ENGLISH = [
    "Tom got into trouble yesterday.", "I have three books and two cats.", "Where did you put the umbrella?",
    "She is reading a newspaper in the kitchen.", "We went to Beijing by train.", "Do you have any cups of tea?",
]


@pytest.fixture(scope="module")
def tokenizer():
    pairs = [(f"{i}号：我有{i}本书。", f"{english} ({i})") for i in range(40) for english in ENGLISH]
    return train_tokenizer(pairs, TokenizerConfig(vocab_size=400, joint=False))[0]


def encoded(tokenizer, pairs):
    return [tokenizer.encode_src(s) for s, _ in pairs], [tokenizer.encode_tgt(t) for _, t in pairs]


def test_sampled_rows_spell_the_same_text_end_in_eos_and_vary(tokenizer):
    src, tgt = encoded(tokenizer, [(f"{i}号：我有{i}本书。", english) for i, english in enumerate(ENGLISH)])
    sampler = SubwordSampler(tokenizer, alpha=0.1, seed=1, max_length=200)
    seen = set()
    for epoch in range(5):
        new_src, new_tgt = sampler(src, tgt, epoch, 0)
        for old, new, model in [*zip(src, new_src, itertools.repeat(tokenizer.src)), *zip(tgt, new_tgt, itertools.repeat(tokenizer.tgt))]:
            assert new[-1] == EOS_ID and EOS_ID not in new[:-1]
            assert model.decode(new[:-1]) == model.decode(old[:-1])
        seen.add(tuple(map(tuple, new_tgt)))
    assert len(seen) == 5  # five epochs, five different spellings of the batch
    assert tuple(map(tuple, tgt)) not in seen  # with α = 0.1 the likeliest spelling of all six is rare


def test_the_same_epoch_and_batch_give_the_same_spelling_whatever_ran_between(tokenizer):
    src, tgt = encoded(tokenizer, [("我有三本书。", sentence) for sentence in ENGLISH])
    sampler = SubwordSampler(tokenizer, alpha=0.1, seed=7, max_length=200)
    first = sampler(src, tgt, 3, 11)
    others = [sampler(src, tgt, 3, 12), SubwordSampler(tokenizer, 0.1, 8, 200)(src, tgt, 3, 11)]
    assert sampler(src, tgt, 3, 11) == first
    assert all(other != first for other in others)


SAMPLE_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from tt.data.subword_sampling import SubwordSampler
from tt.data.tokenizer import Tokenizer
tokenizer = Tokenizer.load(Path(sys.argv[1]))
src, tgt = json.loads(sys.argv[2])
print(json.dumps(SubwordSampler(tokenizer, alpha=0.1, seed=7, max_length=200)(src, tgt, 3, 11)))
"""


def test_a_new_process_draws_the_same_spellings(tokenizer, tmp_path):
    """What --resume and torchrun rely on: no state of the process (SentencePiece's own
    sampler salts its seeds per process) may change a draw."""
    tokenizer.save(tmp_path)
    src, tgt = encoded(tokenizer, [("我有三本书。", sentence) for sentence in ENGLISH])
    here = SubwordSampler(tokenizer, alpha=0.1, seed=7, max_length=200)(src, tgt, 3, 11)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", SAMPLE_IN_A_NEW_PROCESS, str(tmp_path), json.dumps([src, tgt])],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert [list(map(list, side)) for side in json.loads(done.stdout)] == [list(map(list, side)) for side in here]


def test_draws_follow_p_to_the_alpha():
    """Three spellings with ln P = 0, −1, −2: at α = 0.5 drawn ∝ 1 : e^−0.5 : e^−1."""
    log_probs = np.array([0.0, -1.0, -0.5, -0.5])  # pieces 0..3: "0" alone, or "1", or "2 3" (ln P −1)
    candidates = [[[0], [1], [2, 3, 2, 3]]] * 20_000  # ln P: 0, −1, −2
    picks = draw(candidates, log_probs, 0.5, np.random.default_rng(5))
    counts = np.array([sum(p == c for p in picks) for c in candidates[0]])
    expected = np.exp(0.5 * np.array([0.0, -1.0, -2.0]))
    expected = expected / expected.sum() * len(picks)
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected)), (counts, expected)


def test_a_sample_longer_than_the_model_takes_keeps_the_usual_spelling(tokenizer):
    src, tgt = encoded(tokenizer, [("我有三本书。", sentence) for sentence in ENGLISH])
    longest = max(map(len, tgt))
    # The same seed draws the same spellings; only the limit differs. α this small: long spellings.
    unlimited = SubwordSampler(tokenizer, alpha=0.01, seed=1, max_length=10_000)
    limited = SubwordSampler(tokenizer, alpha=0.01, seed=1, max_length=longest)
    too_long = 0
    for batch in range(5):
        _, drawn = unlimited(src, tgt, 0, batch)
        _, new_tgt = limited(src, tgt, 0, batch)
        for new, sample, old in zip(new_tgt, drawn, tgt):
            assert new == (sample if len(sample) <= longest else old)
            too_long += len(sample) > longest
    assert too_long > 0  # the rule was put to the test


def test_a_stream_with_a_sampler_counts_the_sampled_targets_and_resumes_exactly(tokenizer):
    src, tgt = encoded(tokenizer, [(f"{i}号：我有{i}本书。", f"{english} ({i})") for i in range(30) for english in ENGLISH[:3]])
    sampler = SubwordSampler(tokenizer, alpha=0.1, seed=2, max_length=200)
    stream = BatchStream(src, tgt, batch_tokens=200, seed=2, sampler=sampler)
    plain = BatchStream(src, tgt, batch_tokens=200, seed=2)
    batches, plain_batches = stream.rows(), plain.rows()
    for _ in range(3):
        rows = next(batches)
        assert rows == next(plain_batches)  # planned from the stored lengths: the same sentences
        batch = stream.batch(rows)
        assert stream.target_tokens(rows) == int((batch.tgt_out != 0).sum())
        assert stream.target_tokens(rows) != plain.target_tokens(rows)
        half = rows[: len(rows) // 2]
        assert torch.equal(stream.batch(half).tgt_out, batch.tgt_out[: len(half), : stream.batch(half).tgt_out.shape[1]])
    saved = (stream.epoch, stream.position)
    expected = [(rows, stream.batch(rows).tgt_out) for rows in itertools.islice(batches, 2 * stream.batches_per_epoch())]
    resumed = BatchStream(src, tgt, batch_tokens=200, seed=2, sampler=sampler)
    resumed.epoch, resumed.position = saved
    again = [(rows, resumed.batch(rows).tgt_out) for rows in itertools.islice(resumed.rows(), len(expected))]
    assert [rows for rows, _ in again] == [rows for rows, _ in expected]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(again, expected))


def train(corpus, *options):
    return runner.invoke(app, ["train", str(corpus), *TINY_MODEL_OPTIONS, *map(str, options)])


def test_training_with_subword_sampling_records_it_and_resumes_bit_for_bit(tmp_path):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"{s}\t{t}\n" for s, t in tiny_pairs()), encoding="utf-8")
    straight, split, plain = tmp_path / "straight", tmp_path / "split", tmp_path / "plain"
    common = ("--subword-alpha", "0.2", "--cooldown", "0")
    assert train(corpus, "--out", straight, "--max-steps", "8", *common).exit_code == 0
    assert train(corpus, "--out", split, "--max-steps", "4", *common).exit_code == 0
    assert runner.invoke(app, ["train", "--resume", "--out", str(split), "--max-steps", "8"]).exit_code == 0
    assert train(corpus, "--out", plain, "--max-steps", "8", "--cooldown", "0").exit_code == 0
    assert json.loads((straight / "config.json").read_text())["train"]["subword_alpha"] == 0.2
    a, b, c = (load_file(str(folder / "model.safetensors")) for folder in (straight, split, plain))
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not all(torch.equal(a[name], c[name]) for name in a)  # the sampled spellings changed training


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_a_subword_alpha_out_of_range_is_one_clear_line(tmp_path, value):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("我有三本书。\tI have three books.\n", encoding="utf-8")
    result = train(corpus, "--out", tmp_path / "m", "--subword-alpha", value)
    assert result.exit_code != 0
    assert "--subword-alpha must be between 0 (off) and 1" in result.output
    assert "Traceback" not in result.output


def test_the_model_card_says_when_training_sampled_spellings(tiny_config):
    from tt.model.model_card import model_card
    from tt.model.transformer import Transformer

    record = {"step": 10, "train": {"batch_tokens": 2048, "learning_rate": 0.001, "label_smoothing": 0.1, "subword_alpha": 0.2}}
    assert "subword sampling alpha 0.2" in model_card("m", Transformer(tiny_config), record, [], ("zh", "en"))
    record["train"]["subword_alpha"] = 0.0
    assert "subword sampling" not in model_card("m", Transformer(tiny_config), record, [], ("zh", "en"))
