"""Export to CTranslate2 (model/ct2.py): CTranslate2 must compute what tt computes.

A 20-step model only ever says "▁ ▁ ▁…", which agrees with anything; so this module fits
two small models to the tiny corpus for real (a few seconds, one thread): post-LN with a
joint vocabulary and tied embeddings, and pre-LN with separate vocabularies. Their greedy
outputs differ from sentence to sentence, and a wrong weight, norm, position table or start
token in the export shows up as a different translation or score.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from conftest import tiny_pairs
from tt.cli.main import app
from tt.data.batches import make_batch
from tt.data.errors import UserError
from tt.data.tokenizer import EOS_ID, PAD_ID, TokenizerConfig, train_tokenizer
from tt.model.checkpoint import load_model_folder, save_model_folder
from tt.model.decode import greedy_decode
from tt.model.forced import force_decode
from tt.model.transformer import ModelConfig, Transformer, count_parameters

ctranslate2 = pytest.importorskip("ctranslate2")

from tt.model.ct2 import export_ct2  # noqa: E402  (after the skip: it needs ctranslate2 to do anything)

# The corpus, plus sentences it never had: numbers and things in new combinations and orders.
UNSEEN = ["我有十杯茶吗？", "你有一个苹果。", "我有三猫。", "你有五本书吗?", "我有二十本书。", "你好"]


def sources() -> list[str]:
    return [src for src, _ in tiny_pairs()] + UNSEEN


def fit(folder: Path, pre_norm: bool, joint: bool, steps: int) -> Path:
    """Train a d_model-32 model on the tiny corpus (whole corpus per step) and save it as tt does."""
    pairs = tiny_pairs()
    tokenizer, _ = train_tokenizer(pairs, TokenizerConfig(vocab_size=300, joint=joint))
    torch.manual_seed(0)
    config = ModelConfig(
        src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size,
        d_model=32, n_heads=2, d_ff=64, n_layers=2, dropout=0.0, pre_norm=pre_norm, tie_embeddings=joint,
    )
    model = Transformer(config)
    batch = make_batch([tokenizer.encode_src(s) for s, _ in pairs], [tokenizer.encode_tgt(t) for _, t in pairs])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices this small only lose time to a second thread
    try:
        for _ in range(steps):
            log_probs = model(batch.src, batch.src_pad_mask, batch.tgt_in)
            loss = F.nll_loss(log_probs.transpose(1, 2), batch.tgt_out, ignore_index=PAD_ID)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    save_model_folder(folder, model.eval(), tokenizer, {})
    return folder


@pytest.fixture(scope="module")
def post_ln(tmp_path_factory) -> Path:
    return fit(tmp_path_factory.mktemp("ct2") / "post-ln", pre_norm=False, joint=True, steps=60)


@pytest.fixture(scope="module")
def pre_ln(tmp_path_factory) -> Path:
    return fit(tmp_path_factory.mktemp("ct2") / "pre-ln", pre_norm=True, joint=False, steps=30)


@pytest.fixture(scope="module")
def exported(post_ln, tmp_path_factory):
    """quantization → the exported folder (written once per module)."""
    cache: dict[str, Path] = {}

    def get(quantization: str, model_folder: Path = post_ln) -> Path:
        key = f"{model_folder.name}-{quantization}"
        if key not in cache:
            cache[key] = tmp_path_factory.mktemp("export") / key
            export_ct2(model_folder, cache[key], quantization)
        return cache[key]

    return get


def compare(model_folder: Path, ct2_folder: Path, texts: list[str] | None = None) -> tuple[list[str], list[bool]]:
    """tt's greedy texts, and per sentence whether CTranslate2's greedy output is the same."""
    model, tokenizer, _ = load_model_folder(model_folder)
    src_ids = [tokenizer.encode_src(text) for text in texts or sources()]
    hyps = greedy_decode(model, src_ids)
    translator = ctranslate2.Translator(str(ct2_folder), device="cpu", intra_threads=1)
    batch = [[tokenizer.src_piece(i) for i in ids] for ids in src_ids]
    # min_decoding_length=0: tt may end at the first step, so </s> stays allowed there.
    results = translator.translate_batch(batch, beam_size=1, min_decoding_length=0, max_decoding_length=256)
    same = []
    for hyp, result in zip(hyps, results):
        tt_pieces = [tokenizer.tgt_piece(i) for i in hyp.tokens if i != EOS_ID]
        ct2_pieces = result.hypotheses[0]
        if hyp.tokens[-1] != EOS_ID:  # tt stopped at its length limit: compare that prefix
            ct2_pieces = ct2_pieces[: len(tt_pieces)]
        same.append(tt_pieces == ct2_pieces)
    return [tokenizer.decode_tgt(h.tokens) for h in hyps], same


def test_float32_greedy_output_is_tts(post_ln, exported):
    texts, same = compare(post_ln, exported("float32"))
    assert len(set(texts)) >= 20  # a model that says different things, so agreement means something
    assert sum(same) >= 0.99 * len(same), [t for t, s in zip(texts, same) if not s]


def test_pre_ln_separate_vocabularies_export_too(pre_ln, exported):
    folder = exported("float32", pre_ln)
    names = {p.name for p in folder.iterdir()}
    assert {"source_vocabulary.json", "target_vocabulary.json", "source.spm", "target.spm"} <= names
    texts, same = compare(pre_ln, folder)
    assert len(set(texts)) >= 20
    assert sum(same) >= 0.99 * len(same), [t for t, s in zip(texts, same) if not s]


@pytest.mark.parametrize("which", ["post_ln", "pre_ln"])
def test_per_token_scores_agree(which, request, exported):
    model_folder = request.getfixturevalue(which)
    ours, theirs = ct2_log_probs(model_folder, exported("float32", model_folder), tiny_pairs()[::7])
    assert theirs == pytest.approx(ours, abs=1e-4)


def test_greedy_scores_agree(post_ln, exported):
    model, tokenizer, _ = load_model_folder(post_ln)
    src_ids = [tokenizer.encode_src(s) for s in sources()[:12]]
    hyps = greedy_decode(model, src_ids)
    translator = ctranslate2.Translator(str(exported("float32")), device="cpu", intra_threads=1)
    results = translator.translate_batch(
        [[tokenizer.src_piece(i) for i in ids] for ids in src_ids],
        beam_size=1, min_decoding_length=0, return_scores=True, length_penalty=0,  # the plain sum of ln p
    )
    finished = [(hyp, result) for hyp, result in zip(hyps, results) if hyp.tokens[-1] == EOS_ID]
    assert len(finished) >= 6  # (one that hit tt's length limit would go on in CTranslate2)
    for hyp, result in finished:
        assert result.scores[0] == pytest.approx(hyp.log_prob, abs=1e-4 * len(hyp.tokens))


def ct2_log_probs(model_folder: Path, ct2_folder: Path, pairs) -> tuple[list[float], list[float]]:
    """Every reference token's ln p: tt's (teacher-forced) and CTranslate2's (score_batch), flattened."""
    model, tokenizer, _ = load_model_folder(model_folder)
    src_ids = [tokenizer.encode_src(s) for s, _ in pairs]
    tgt_ids = [tokenizer.encode_tgt(t) for _, t in pairs]
    ours = force_decode(model, src_ids, tgt_ids)
    translator = ctranslate2.Translator(str(ct2_folder), device="cpu", intra_threads=1)
    theirs = translator.score_batch(
        [[tokenizer.src_piece(i) for i in ids] for ids in src_ids],
        [[tokenizer.tgt_piece(i) for i in ids[:-1]] for ids in tgt_ids],  # CTranslate2 adds the </s>
    )
    for forced, scored in zip(ours, theirs):
        assert scored.tokens == [tokenizer.tgt_piece(i) for i in forced.tokens]
    return [p for f in ours for p in f.token_log_probs], [p for r in theirs for p in r.log_probs]


@pytest.mark.parametrize("quantization", ["int8", "int8_float32", "bfloat16"])
def test_quantized_exports_track_float32(post_ln, exported, quantization):
    folder = exported(quantization)
    assert (folder / "model.bin").stat().st_size < (exported("float32") / "model.bin").stat().st_size
    ours, theirs = ct2_log_probs(post_ln, folder, tiny_pairs()[::9])
    mean_error = sum(abs(a - b) for a, b in zip(ours, theirs)) / len(ours)
    # Rounding moves each ln p a little (a hundredth of a nat here); ctranslate2's own 8-bit
    # int8 on an AVX2 CPU moved them by half a nat (see INT8_WEIGHT_BITS in model/ct2.py).
    assert 0 < mean_error < 0.05
    _, tokenizer, _ = load_model_folder(post_ln)
    translator = ctranslate2.Translator(str(folder), device="cpu", intra_threads=1)
    results = translator.translate_batch([[tokenizer.src_piece(i) for i in tokenizer.encode_src(s)] for s in UNSEEN], beam_size=1)
    assert all(tokenizer.tgt.decode(r.hypotheses[0]).strip() for r in results)


def test_folder_holds_the_tokenizer_and_says_how_to_use_it(post_ln, exported):
    folder = exported("float32")
    _, tokenizer, _ = load_model_folder(post_ln)
    assert (folder / "source.spm").read_bytes() == tokenizer.src.serialized_model_proto()
    config = json.loads((folder / "config.json").read_text())
    assert (config["decoder_start_token"], config["eos_token"]) == ("<s>", "</s>")
    vocabulary = json.loads((folder / "shared_vocabulary.json").read_text())
    assert vocabulary == [tokenizer.tgt_piece(i) for i in range(tokenizer.tgt_vocab_size)]  # tt's ids
    readme = (folder / "README.md").read_text()
    assert "</s>" in readme and "source.spm" in readme
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_tied_matrix_is_stored_once(post_ln, exported):
    # ctranslate2 aliases equal tensors: the matrix that tt ties (source and target embeddings,
    # output projection) is stored once in model.bin, as is the position table both sides share.
    model, _, _ = load_model_folder(post_ln)
    once = 4 * (count_parameters(model) + model.positions.numel())  # float32 bytes
    embedding = 4 * model.src_embed.weight.numel()
    size = (exported("float32") / "model.bin").stat().st_size
    assert once <= size < once + embedding  # a second copy of the matrix would not fit


def export_command(model_folder: Path, out: Path, *options: str):
    return CliRunner().invoke(app, ["export", str(out), "--model", str(model_folder), "--format", "ct2", *options])


def test_an_earlier_export_is_kept_unless_overwrite_and_then_replaced(post_ln, tmp_path):
    assert export_command(post_ln, tmp_path / "out", "--quantization", "int8").exit_code == 0
    first = (tmp_path / "out" / "model.bin").read_bytes()
    refused = export_command(post_ln, tmp_path / "out")
    assert refused.exit_code == 1 and "--overwrite" in refused.stderr and "Traceback" not in refused.output
    assert (tmp_path / "out" / "model.bin").read_bytes() == first
    replaced = export_command(post_ln, tmp_path / "out", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert (tmp_path / "out" / "model.bin").read_bytes() != first  # float32 now
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or old folder left beside it


def test_overwrite_never_replaces_what_is_not_an_earlier_export(post_ln, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    project = tmp_path / "project"  # a folder that holds the model being exported
    project.mkdir()
    shutil.copytree(post_ln, project / "zh-en")
    (project / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    for out, fragment in [
        (tmp_path / "mine", "not an exported model"), (project, "holds the model folder"),
        (Path("."), "the folder you are working in"), (Path(""), "the folder you are working in"),
        (tmp_path, "the folder you are working in"),
    ]:
        model = project / "zh-en" if out == project else post_ln
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        result = export_command(model, out, "--overwrite")
        assert result.exit_code == 1 and "Traceback" not in result.output, (out, result.output)
        assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, (out, result.stderr)
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_an_unknown_quantization_is_one_line_before_any_work(post_ln, tmp_path):
    result = export_command(post_ln, tmp_path / "new", "--quantization", "int4")
    assert result.exit_code == 1 and "int8" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_an_empty_folder_is_filled(post_ln, tmp_path):
    (tmp_path / "out").mkdir()
    result = export_command(post_ln, tmp_path / "out", "--quantization", "int8")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "model.bin").exists() and "int8" in result.stderr


def test_a_failed_export_leaves_nothing(post_ln, tmp_path, monkeypatch):
    import tt.model.ct2 as ct2

    def fail(*args, **kwargs):
        raise UserError("disk full, say")

    monkeypatch.setattr(ct2, "folder_readme", fail)  # fails after model.bin is written
    with pytest.raises(UserError):
        export_ct2(post_ln, tmp_path / "out", "float32")
    assert list(tmp_path.iterdir()) == []


def test_missing_ctranslate2_is_one_line_naming_the_extra(post_ln, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 → ImportError
    with pytest.raises(UserError, match=r"pip install 'tt-translator\[ct2\]'"):
        export_ct2(post_ln, tmp_path / "out", "float32")
    assert not (tmp_path / "out").exists()


def test_a_model_without_residual_connections_is_refused(tmp_path, tiny_config):
    from dataclasses import replace

    pairs = tiny_pairs()
    tokenizer, _ = train_tokenizer(pairs, TokenizerConfig(vocab_size=300, joint=True))
    config = replace(tiny_config, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size, residual=False)
    save_model_folder(tmp_path / "m", Transformer(config).eval(), tokenizer, {})
    with pytest.raises(UserError, match="no-residual"):
        export_ct2(tmp_path / "m", tmp_path / "out", "float32")
    assert not (tmp_path / "out").exists()


def test_bench_row_makes_exactly_the_tokens_it_counts(post_ln):
    from tt.model.speed import ct2_fixed_length_decode, ct2_translator, fixed_length_sources

    model, tokenizer, _ = load_model_folder(post_ln)
    src = [[tokenizer.src_piece(i) for i in row] for row in fixed_length_sources(tokenizer.src_vocab_size, sentences=70, src_len=6)]
    for quantization in ("float32", "int8"):
        outputs, seconds = ct2_fixed_length_decode(ct2_translator(model, tokenizer, quantization, torch.device("cpu")), src, out_len=5)
        assert len(outputs) == 70 and all(len(pieces) == 5 for pieces in outputs) and seconds > 0
        assert not any("</s>" in pieces for pieces in outputs)
