"""The Marian format without transformers: the name table, the dimension order, the folder
checks, the model-id lookup and `tt export`'s refusals. (Agreement with transformers itself:
tests/test_hf_marian.py.)"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_pairs
from tt.cli.main import app
from tt.data.errors import UserError
from tt.data.spm_normalizer import with_nfkc
from tt.data.tokenizer import TokenizerConfig, train_tokenizer
from tt.model import marian_folder
from tt.model.checkpoint import save_model_folder
from tt.model.folders import resolve_model
from tt.model.marian import halves, hf_name, marian_tensors, tt_name, tt_tensors
from tt.model.marian_folder import marian_files
from tt.model.transformer import ModelConfig, Transformer, sinusoidal_positions

runner = CliRunner()


def marian_table(positions: int, d: int) -> torch.Tensor:
    """Marian's layout, written from its definition: sin(pos·ω_i) for i < d/2, then cos(pos·ω_i)."""
    table = torch.zeros(positions, d, dtype=torch.float64)
    for pos in range(positions):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            table[pos, i], table[pos, d // 2 + i] = math.sin(angle), math.cos(angle)
    return table.float()


def test_reordering_the_model_dimension_turns_tts_positions_into_marians():
    ours = sinusoidal_positions(50, 16)
    assert not torch.equal(ours, marian_table(50, 16))  # the layouts do differ …
    torch.testing.assert_close(ours[:, halves(16)], marian_table(50, 16), atol=1e-6, rtol=0)  # … by this order


def test_the_name_table_reads_both_ways(tiny_config):
    model = Transformer(replace(tiny_config, n_layers=2))
    layer_names = [n for n in model.state_dict() if n.startswith(("encoder.", "decoder."))]
    theirs = [hf_name(n) for n in layer_names]
    assert None not in theirs and len(set(theirs)) == len(theirs)
    assert [tt_name(n) for n in theirs] == layer_names


def random_model(config: ModelConfig) -> Transformer:
    model = Transformer(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # biases and norms too: a zero would hide a misplaced one
            parameter.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("options", [
    dict(activation="silu", output_bias=True),
    dict(activation="gelu", tie_embeddings=False, tgt_vocab_size=40, tie_output=True),
    dict(tie_embeddings=False, scale_embedding=False),
])
def test_weights_to_marian_and_back_give_the_same_model(tiny_config, options):
    config = replace(tiny_config, **options)
    model = random_model(config)
    tensors = marian_tensors(model)
    shared, tied = model.src_embed is model.tgt_embed, model.project.weight is model.tgt_embed.weight
    back = Transformer(config).eval()
    back.load_state_dict(tt_tensors(tensors.__getitem__, config, shared, tied, set(tensors)))
    src, tgt = torch.randint(4, 40, (2, 6)), torch.randint(4, 40, (2, 5))
    torch.testing.assert_close(back(src, src == 0, tgt), model(src, src == 0, tgt), atol=1e-6, rtol=0)
    assert not torch.equal(tensors["model.encoder.layers.0.fc1.weight"], model.encoder[0].feed_forward.expand.weight)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(tiny_pairs(), TokenizerConfig(vocab_size=300, joint=True))[0]


def test_exported_sentencepiece_files_normalize_as_tt_does(tokenizer):
    exported = with_nfkc(tokenizer.src.serialized_model_proto())
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_proto=exported)
    assert [model.id_to_piece(i) for i in range(model.get_piece_size())] == [tokenizer.src_piece(i) for i in range(tokenizer.src_vocab_size)]
    assert model.encode("你有七杯茶吗？") == tokenizer.src.encode("你有七杯茶吗?")  # full-width ？ folds, as tt.data.normalize does
    assert tokenizer.src.encode("你有七杯茶吗？") != tokenizer.src.encode("你有七杯茶吗?")  # (tt's own file does not fold it)


@pytest.fixture
def marian_dir(tmp_path, tokenizer, tiny_config) -> Path:
    """A small Marian folder written by tt's exporter (transformers-built ones: test_hf_marian.py)."""
    config = replace(tiny_config, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size)
    folder = tmp_path / "marian"
    folder.mkdir()
    for name, data in marian_files(random_model(config), tokenizer, ("zh", "en")).items():
        (folder / name).write_bytes(data)
    return folder


def one_line_error(result, *words):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_marian_folder_opens(marian_dir):
    result = runner.invoke(app, ["tokenize", "--model", str(marian_dir), "你有七杯茶吗？"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["translate", "--model", str(marian_dir), "我有三本书。"]).exit_code == 0
    info = runner.invoke(app, ["info", "--model", str(marian_dir)])
    assert info.exit_code == 0 and "training data: not recorded in this folder" in info.stdout, info.output


@pytest.fixture
def nothing_allocated(monkeypatch):
    """The loader must refuse before it builds the model: building one is an error here."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was allocated for a folder that should have been refused")

    monkeypatch.setattr(marian_folder, "Transformer", refuse)


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_missing_vocabulary_is_one_line(marian_dir, nothing_allocated):
    (marian_dir / "vocab.json").unlink()
    one_line_error(runner.invoke(app, ["info", "--model", str(marian_dir)]), "vocab.json")


def test_wrong_shapes_are_one_line(marian_dir, nothing_allocated):
    edit_config(marian_dir, encoder_ffn_dim=64, decoder_ffn_dim=64)
    one_line_error(runner.invoke(app, ["translate", "--model", str(marian_dir), "x"]), "shape", "fc1")


@pytest.mark.parametrize("claim", [dict(d_model=1 << 20), dict(encoder_layers=4000, decoder_layers=4000), dict(vocab_size=1_000_000, d_model=16384, encoder_attention_heads=16, decoder_attention_heads=16)])
def test_a_config_claiming_a_huge_model_is_one_line(marian_dir, nothing_allocated, claim):
    edit_config(marian_dir, **claim)
    one_line_error(runner.invoke(app, ["score", "--model", str(marian_dir), "--src", "x", "--ref", "y"]), "config.json")


def test_pickle_only_is_refused_with_the_way_to_safetensors(marian_dir, nothing_allocated):
    (marian_dir / "model.safetensors").rename(marian_dir / "pytorch_model.bin")
    one_line_error(runner.invoke(app, ["translate", "--model", str(marian_dir), "x"]), "pytorch_model.bin", "model.safetensors")


def test_a_model_id_is_found_in_the_hugging_face_cache(marian_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--someone--tiny-zh-en"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots").mkdir()
    marian_dir.rename(repo / "snapshots" / "abc123")
    assert resolve_model(Path("someone/tiny-zh-en")) == repo / "snapshots" / "abc123"
    result = runner.invoke(app, ["tokenize", "--model", "someone/tiny-zh-en", "我有三本书。"])
    assert result.exit_code == 0, result.output
    assert resolve_model(Path("tt-model")) == Path("tt-model")  # a plain name is a folder, found or not
    with pytest.raises(UserError, match="huggingface-cli download someone/other"):
        resolve_model(Path("someone/other"))


def test_export_refuses_what_marian_cannot_hold(tmp_path, tokenizer, tiny_config):
    config = replace(tiny_config, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size, pre_norm=True)
    save_model_folder(tmp_path / "pre", Transformer(config), tokenizer, {})
    one_line_error(runner.invoke(app, ["export", str(tmp_path / "out"), "--model", str(tmp_path / "pre")]), "pre-LN")
    assert not (tmp_path / "out").exists()


def test_export_keeps_an_existing_folder(trained_model, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    one_line_error(runner.invoke(app, ["export", str(tmp_path / "out"), "--model", str(trained_model)]), "--overwrite")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("format", ["hf", "ct2"])
def test_export_over_a_file_is_refused_even_with_overwrite(trained_model, tmp_path, format):
    (tmp_path / "out").write_text("mine")
    result = runner.invoke(app, ["export", str(tmp_path / "out"), "--model", str(trained_model), "--format", format, "--overwrite"])
    one_line_error(result, "is a file")
    assert (tmp_path / "out").read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_ct2_without_ctranslate2_is_one_line_naming_the_extra(trained_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 → ImportError, as where it is not installed
    result = runner.invoke(app, ["export", str(tmp_path / "out"), "--model", str(trained_model), "--format", "ct2"])
    one_line_error(result, "pip install 'tt-translator[ct2]'")
    assert not (tmp_path / "out").exists()


def test_ct2_export_of_a_marian_folder_is_one_line(marian_dir, tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path / "out"), "--model", str(marian_dir), "--format", "ct2"])
    one_line_error(result, "exported by tt", "--format ct2")  # ctranslate2's converter would fail on tt's <s>
    config = json.loads((marian_dir / "config.json").read_text())
    edit_config(marian_dir, decoder_start_token_id=config["pad_token_id"])  # as Marian's own models start
    result = runner.invoke(app, ["export", str(tmp_path / "out"), "--model", str(marian_dir), "--format", "ct2"])
    one_line_error(result, "Marian", "ct2-transformers-converter")
    assert not (tmp_path / "out").exists()


def test_weights_that_are_not_numbers_are_refused(marian_dir):
    from safetensors.torch import load_file, save_file

    tensors = load_file(marian_dir / "model.safetensors")
    name = next(key for key in tensors if key.endswith("fc1.weight"))
    tensors[name][0, 0] = float("nan")
    save_file(tensors, marian_dir / "model.safetensors")
    one_line_error(runner.invoke(app, ["translate", "--model", str(marian_dir), "我有三本书。"]), "NaN or infinite")


def test_other_hugging_face_models_and_ctranslate2_folders_say_what_they_are(marian_dir, tmp_path):
    edit_config(marian_dir, model_type="bart")
    one_line_error(runner.invoke(app, ["translate", "--model", str(marian_dir), "我"]), "a Hugging Face 'bart' model")
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    (ct2 / "model.bin").write_bytes(b"\0" * 16)
    (ct2 / "config.json").write_text("{}")
    one_line_error(runner.invoke(app, ["translate", "--model", str(ct2), "我"]), "a CTranslate2 model")
