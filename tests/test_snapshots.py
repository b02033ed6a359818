"""Snapshot tests: the exact text of the tables for a tiny fixed model.

The model is freshly initialized from a fixed seed (no training, float32), the tokenizer is
the fixture's (SentencePiece training is deterministic), so every number is reproducible.
A deliberate change to a table's layout is accepted by re-running with
TT_UPDATE_SNAPSHOTS=1 and reading the diff before committing it.
"""

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console

from tt.cli.tables import lens_table, probability_table
from tt.cli.translator import Translator
from tt.model.decode import DecodeConfig
from tt.model.transformer import Transformer

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.fixture
def fixed_translator(trained_model):
    translator = Translator(trained_model)
    torch.manual_seed(1234)
    config = replace(translator.model.config, n_layers=2, dropout=0.0)
    translator.model = Transformer(config).eval()
    return translator


def render(renderable) -> str:
    console = Console(width=100, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def check(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("TT_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {name}: run with TT_UPDATE_SNAPSHOTS=1 to record it"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; TT_UPDATE_SNAPSHOTS=1 to accept"


def test_probability_table_text(fixed_translator):
    [result] = fixed_translator.translate(["我有三本书。"], DecodeConfig(max_len_ratio=0, max_len_extra=4), inspect=True)
    check("probs_table.txt", render(probability_table(result, fixed_translator, 3)))


def test_lens_table_text(fixed_translator):
    [result] = fixed_translator.translate(["我有三本书。"], DecodeConfig(max_len_ratio=0, max_len_extra=4), inspect=True, lens=True)
    check("lens_table.txt", render(lens_table(result, fixed_translator)))
