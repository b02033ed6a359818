"""Shared fixtures: a tiny corpus, a tiny model config, and one tiny trained model folder.

Everything here is small enough that the whole default suite runs in a few minutes on two
cores; real training lives behind `@pytest.mark.slow`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tt.cli.main import app
from tt.model.transformer import ModelConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba-cmn-eng"

NUMBERS = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"]
ENGLISH = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
THINGS = [("苹果", "apples"), ("书", "books"), ("猫", "cats"), ("杯茶", "cups of tea")]


def tiny_pairs() -> list[tuple[str, str]]:
    """80 made-up pairs with a regular structure: "我有三本书。" → "I have three books."."""
    pairs = []
    for zh_number, en_number in zip(NUMBERS, ENGLISH):
        for zh_thing, en_thing in THINGS:
            pairs.append((f"我有{zh_number}{zh_thing}。", f"I have {en_number} {en_thing}."))
            pairs.append((f"你有{zh_number}{zh_thing}吗？", f"Do you have {en_number} {en_thing}?"))
    return pairs


def write_tsv(path: Path, pairs) -> Path:
    path.write_text("".join(f"{src}\t{tgt}\n" for src, tgt in pairs), encoding="utf-8")
    return path


@pytest.fixture
def tiny_config() -> ModelConfig:
    return ModelConfig(src_vocab_size=50, tgt_vocab_size=50, d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0)


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    return write_tsv(tmp_path / "corpus.tsv", tiny_pairs())


# One joint vocabulary, as most tests were written for (tt would choose two for these
# Chinese–English pairs; tests/test_vocabularies.py and the --separate-vocab tests cover that).
TINY_MODEL_OPTIONS = [
    "--d-model", "16", "--heads", "2", "--layers", "1", "--ff", "32",
    "--vocab-size", "300", "--joint-vocab", "--batch-tokens", "256", "--warmup", "5", "--seed", "3",
]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A 20-step model folder: nonsense translations, but every file a real run writes."""
    folder = tmp_path_factory.mktemp("trained")
    corpus = write_tsv(folder / "corpus.tsv", tiny_pairs())
    result = CliRunner().invoke(app, ["train", str(corpus), "--out", str(folder / "model"), "--max-steps", "20", *TINY_MODEL_OPTIONS])
    assert result.exit_code == 0, result.output
    return folder / "model"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
