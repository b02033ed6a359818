"""What training records about itself: probe lines equal `tt score` on the saved weights, gradient
norms equal a direct computation, probing changes nothing in training, and --no-residual is the formula."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import TINY_MODEL_OPTIONS
from tt.cli.main import app
from tt.data.batches import make_batch
from tt.data.errors import UserError
from tt.data.tokenizer import PAD_ID
from tt.model.backward import backward_stream
from tt.model.loss import label_smoothed_loss
from tt.model.probes import DEMO_PROBE, GradientFlow, gather_probes, model_parts, parse_probe
from tt.model.transformer import DecoderLayer, EncoderLayer, Transformer

runner = CliRunner()
PROBE = "我有三本书。\tI have three books."


def train(*args):
    result = runner.invoke(app, ["train", *map(str, args), *TINY_MODEL_OPTIONS])
    assert result.exit_code == 0, result.output
    return result


def lines_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    from conftest import tiny_pairs, write_tsv

    folder = tmp_path_factory.mktemp("probed")
    corpus = write_tsv(folder / "corpus.tsv", tiny_pairs())
    train(corpus, "--out", folder / "m", "--max-steps", "5", "--log-every", "2", "--probe", PROBE, "--probe", "你有三本书吗？\tDo you have three books?")
    return corpus, folder / "m"


def test_probe_lines_are_recorded_at_0_each_log_interval_and_the_last_step(probed_run):
    _, out = probed_run
    probes = [line for line in lines_of(out) if "probe" in line]
    assert [line["step"] for line in probes if line["probe"] == "我有三本书。"] == [0, 2, 4, 5]
    for line in probes:
        assert set(line) == {"step", "probe", "reference", "tokens", "cross_entropy", "translation"}
        assert line["tokens"][-1]["token"] == "</s>" and all(set(t) == {"token", "prob"} for t in line["tokens"])
        nll = [-math.log(t["prob"]) for t in line["tokens"]]
        assert line["cross_entropy"] == pytest.approx(sum(nll) / len(nll), rel=1e-6)
    assert json.loads((out / "config.json").read_text())["probes"][0] == PROBE.split("\t")


def test_the_last_probe_line_equals_tt_score_on_the_saved_checkpoint(probed_run):
    _, out = probed_run
    last = [line for line in lines_of(out) if line.get("probe") == "我有三本书。"][-1]
    scored = runner.invoke(app, ["score", "--model", str(out), "--src", "我有三本书。", "--ref", "I have three books.", "--json"])
    assert scored.exit_code == 0, scored.output
    score = json.loads(scored.stdout)
    assert [t["token"] for t in last["tokens"]] == [t["token"] for t in score["tokens"]]
    assert [t["prob"] for t in last["tokens"]] == pytest.approx([t["prob"] for t in score["tokens"]], rel=1e-5, abs=1e-9)
    assert last["cross_entropy"] == pytest.approx(score["cross_entropy"], rel=1e-5)
    translated = runner.invoke(app, ["translate", "--model", str(out), "我有三本书。"])
    assert translated.stdout.strip() == last["translation"].strip()


def test_probing_does_not_change_training(probed_run, tmp_path):
    corpus, out = probed_run
    plain = tmp_path / "plain"
    train(corpus, "--out", plain, "--max-steps", "5", "--log-every", "2")
    a, b = load_file(str(out / "model.safetensors")), load_file(str(plain / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not [line for line in lines_of(plain) if "probe" in line]
    losses = lambda folder: [(l["step"], l["loss"]) for l in lines_of(folder) if "loss" in l]  # noqa: E731
    assert losses(out) == losses(plain)


def test_metrics_lines_carry_gradient_norms_for_every_part(probed_run):
    _, out = probed_run
    logged = [line for line in lines_of(out) if "loss" in line]
    assert [line["step"] for line in logged] == [2, 4, 5]
    for line in logged:
        assert set(line["grad_norm"]) == {"embeddings", "encoder.0", "decoder.0", "output"} == set(line["update_ratio"])
        assert all(value > 0 for value in line["grad_norm"].values())


def test_probe_options_are_checked(tmp_path, corpus_file):
    assert parse_probe("a\tb", "--probe").reference == "b"
    for bad in ("no tab", "a\tb\tc", "\tb", "a\t "):
        with pytest.raises(UserError, match="--probe"):
            parse_probe(bad, "--probe")
    result = runner.invoke(app, ["train", str(corpus_file), "--out", str(tmp_path / "m"), "--probe", "no tab", *TINY_MODEL_OPTIONS])
    assert result.exit_code == 1 and "SOURCE<TAB>REFERENCE" in result.stderr and not (tmp_path / "m").exists()
    pairs = tmp_path / "probes.tsv"
    pairs.write_text("你好\tHello\n谢谢\tThanks\n", encoding="utf-8")
    assert [p.source for p in gather_probes(["a\tb"], str(pairs))] == ["a", "你好", "谢谢"]


def test_the_demo_probes_hello_world_by_default():
    from tt.cli.train_command import _probes

    assert [(p.source, p.reference) for p in _probes({}, demo=True)] == [DEMO_PROBE]
    assert _probes({}, demo=False) == []
    assert [p.source for p in _probes({"probe": ["x\ty"]}, demo=True)] == ["x"]


# ---- gradient flow, against a direct computation


def one_update(config):
    torch.manual_seed(0)
    model = Transformer(config)
    batch = make_batch([[5, 6, 7, 2], [8, 9, 2]], [[10, 11, 12, 2], [13, 2]])
    parts = label_smoothed_loss(model(batch.src, batch.src_pad_mask, batch.tgt_in), batch.tgt_out, 0.1, PAD_ID)
    (parts.kl / parts.n_tokens).backward()
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_gradient_norms_and_update_ratios_equal_a_direct_computation(tiny_config, tie):
    from dataclasses import replace

    config = replace(tiny_config, n_layers=2, tie_embeddings=tie, tgt_vocab_size=50 if tie else 40)
    model = one_update(config)
    before = {name: p.detach().clone() for name, p in model.named_parameters(remove_duplicate=False)}
    grads = {name: p.grad.clone() for name, p in model.named_parameters(remove_duplicate=False)}
    flow = GradientFlow(model)
    flow.before_update()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)  # clipping does not change what was measured
    torch.optim.AdamW(model.parameters(), lr=1e-2).step()
    flow.after_update()
    after = dict(model.named_parameters(remove_duplicate=False))

    def direct(prefixes, values):
        names = [n for n in values if n.startswith(prefixes)]
        return math.sqrt(sum(float(values[n].pow(2).sum()) for n in names))

    groups = {
        "embeddings": ("src_embed.", "tgt_embed."), "encoder.0": ("encoder.0.",), "encoder.1": ("encoder.1.", "encoder_norm."),
        "decoder.0": ("decoder.0.",), "decoder.1": ("decoder.1.",), "output": ("project.", "final_norm."),
    }
    if tie:  # one matrix under three names: count it once per part
        grads = {n: g for n, g in grads.items() if n != "tgt_embed.weight"}
    assert set(flow.grad_norm) == set(groups)
    for part, prefixes in groups.items():
        assert flow.grad_norm[part] == pytest.approx(direct(prefixes, grads), rel=1e-5)
        deltas = {n: after[n].detach() - before[n] for n in before if n in grads}
        weights = {n: before[n] for n in before if n in grads}
        assert flow.update_ratio[part] == pytest.approx(direct(prefixes, deltas) / direct(prefixes, weights), rel=1e-4)


def test_model_parts_cover_every_parameter(tiny_config):
    model = Transformer(tiny_config)
    covered = {id(p) for params in model_parts(model).values() for p in params}
    assert covered == {id(p) for p in model.parameters()}


# ---- --no-residual


def test_no_residual_layers_follow_the_formula(tiny_config):
    from dataclasses import replace

    config = replace(tiny_config, residual=False)
    torch.manual_seed(0)
    x = torch.randn(2, 5, config.d_model)
    memory = torch.randn(2, 4, config.d_model)
    allowed = torch.ones(2, 1, 1, 4, dtype=torch.bool)
    source_allowed = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    encoder = EncoderLayer(config).eval()
    h = encoder.self_attn_norm(encoder.self_attn(x, x, source_allowed))
    expected = encoder.feed_forward_norm(encoder.feed_forward(h))  # x → LayerNorm(f(x)), twice
    assert torch.allclose(encoder(x, source_allowed), expected, atol=1e-6)
    decoder = DecoderLayer(config).eval()
    h = decoder.self_attn_norm(decoder.self_attn(x, x, causal=True))
    h = decoder.cross_attn_norm(decoder.cross_attn(h, memory, allowed))
    expected = decoder.feed_forward_norm(decoder.feed_forward(h))
    assert torch.allclose(decoder(x, memory, allowed), expected, atol=1e-6)
    with_residual = EncoderLayer(replace(config, residual=True)).eval()
    with_residual.load_state_dict(encoder.state_dict())
    assert not torch.allclose(with_residual(x, source_allowed), encoder(x, source_allowed))


def test_no_residual_is_recorded_and_refused_on_resume_with_another_value(tmp_path, corpus_file):
    out = tmp_path / "m"
    train(corpus_file, "--out", out, "--max-steps", "2", "--no-residual")
    assert json.loads((out / "config.json").read_text())["model"]["residual"] is False
    refused = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "3", "--residual"])
    assert refused.exit_code == 1 and "--residual" in refused.stderr and "Traceback" not in refused.output
    same = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "3", "--no-residual"])
    assert same.exit_code == 0, same.output


# ---- the backward residual stream


@pytest.mark.parametrize("residual", [True, False])
def test_backward_stream_splits_the_gradient_into_its_two_paths(tiny_config, residual):
    from dataclasses import replace

    model = Transformer(replace(tiny_config, n_layers=2, residual=residual))
    batch = make_batch([[5, 6, 7, 2]], [[10, 11, 12, 2]])
    paths = backward_stream(model, batch, index=2, target=12)
    assert len(paths) == 2 * 2 + 2 * 3
    for p in paths:
        if residual:
            assert p.via_residual > 0
        else:
            assert p.via_residual == 0 and p.via_f == pytest.approx(p.total, rel=1e-6)
    # Against autograd on the model's own input: the gradient at the first decoder layer's input
    # is the gradient at the embedded target (what enters decoder.0's self-attention).
    embedded = {}
    handle = model.decoder[0].register_forward_pre_hook(lambda m, args: embedded.update(x=args[0]))
    log_probs = model(batch.src, batch.src_pad_mask, batch.tgt_in)
    handle.remove()
    (grad,) = torch.autograd.grad(-log_probs[0, 2, 12], embedded["x"])
    first = next(p for p in paths if p.name == "decoder.0.self-attention")
    assert first.total == pytest.approx(float(grad[0, 2].norm()), rel=1e-5)
