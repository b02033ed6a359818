"""Model folders: save → load keeps logits, nothing is pickled, unknown keys are refused."""

import json

import pytest
import torch

from tt.data.errors import UserError
from tt.model.checkpoint import load_model_folder, save_model_folder
from tt.model.model_record import read_json
from tt.model.transformer import Transformer


def test_save_load_keeps_logits(trained_model, tmp_path):
    model, tokenizer, record = load_model_folder(trained_model)
    with torch.no_grad():  # weights no file holds yet: only a faithful save can reproduce them
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    save_model_folder(tmp_path / "saved", model, tokenizer, record)
    reloaded, _, _ = load_model_folder(tmp_path / "saved")
    src = torch.tensor([tokenizer.encode_src("我有三本书。")])
    tgt = torch.tensor([[2] + tokenizer.encode_tgt("I have three books.")[:-1]])
    expected = model(src, src == 0, tgt)
    torch.testing.assert_close(reloaded(src, src == 0, tgt), expected, rtol=0, atol=0)
    assert not torch.equal(load_model_folder(trained_model)[0](src, src == 0, tgt), expected)  # the change was real
    assert isinstance(reloaded, Transformer) and not reloaded.training
    assert reloaded.project.weight is reloaded.src_embed.weight  # tying survives the round trip


def test_folder_holds_every_file_a_run_writes(trained_model):
    names = {p.name for p in trained_model.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.model", "metrics.jsonl", "train_state.safetensors"} <= names
    assert not [n for n in names if ".tmp" in n]  # no temporary left behind
    record = read_json(trained_model / "config.json")
    assert record["step"] == 20
    assert record["model"]["d_model"] == 16


def test_no_pickle_anywhere(trained_model):
    for path in (p for p in trained_model.rglob("*") if p.is_file()):  # the prepared corpus too
        head = path.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"\x80\x02", f"{path.name} looks like a pickle"
        assert not path.name.endswith((".pt", ".pth", ".pkl", ".bin"))


def test_unknown_config_key_is_refused(trained_model, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in trained_model.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    record = json.loads((copy / "config.json").read_text())
    record["model"]["d_modle"] = 3
    (copy / "config.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"config.json: model: unknown key 'd_modle'"):
        load_model_folder(copy)


def test_corrupt_weights_give_a_user_error(trained_model, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in trained_model.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    (copy / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(UserError, match="model.safetensors"):
        load_model_folder(copy)


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="no such model folder"):
        load_model_folder(tmp_path / "nope")


def _copy_folder(source, target):
    target.mkdir()
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def test_a_weights_file_missing_a_tensor_is_refused(trained_model, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = _copy_folder(trained_model, tmp_path / "copy")
    tensors = load_file(str(copy / "model.safetensors"))
    dropped = sorted(name for name in tensors if name.startswith("encoder.0."))[0]
    del tensors[dropped]
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(UserError, match=r"model.safetensors: tensor \S+ is missing"):
        load_model_folder(copy)


def test_a_tiny_file_claiming_a_huge_model_is_refused_before_allocating(trained_model, tmp_path, monkeypatch):
    """An empty weights file and a config of about a billion parameters (inside the limits):
    the gap must be found from the header alone, never by building the model first."""
    from safetensors.torch import save_file

    import tt.model.checkpoint as checkpoint

    copy = _copy_folder(trained_model, tmp_path / "copy")
    record = json.loads((copy / "config.json").read_text())
    record["model"].update(d_model=2048, n_heads=16, d_ff=8192, n_layers=12)
    (copy / "config.json").write_text(json.dumps(record))
    save_file({}, str(copy / "model.safetensors"))
    built_for_real = []

    class Spy(checkpoint.Transformer):
        def __init__(self, config):
            if torch.get_default_device().type != "meta":
                built_for_real.append(config)
                raise AssertionError("allocated the model before checking the file")
            super().__init__(config)

    monkeypatch.setattr(checkpoint, "Transformer", Spy)
    with pytest.raises(UserError, match="is missing"):
        load_model_folder(copy)
    assert built_for_real == []


def test_loading_a_model_leaves_torch_compiler_stack_alone(trained_model):
    """Start-up: the shapes-only skeleton that checks a checkpoint once pulled in torch._dynamo
    (seconds of imports) through its weight initialisation and position table on the meta device."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from tt.model.checkpoint import load_model_folder; "
        f"load_model_folder(Path({str(trained_model)!r})); print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
