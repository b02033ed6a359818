"""Real training runs (`pytest -m slow`): the demo, and a short run on the shared Tatoeba data."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

TT = str(Path(sys.executable).parent / "tt")


def run(*args, cwd, timeout=600):
    return subprocess.run([TT, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_demo_translates_hello_world(tmp_path):
    trained = run("train", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "tt-model" / "model.safetensors").exists()
    translated = run("translate", "你好世界!", cwd=tmp_path)
    assert translated.returncode == 0, translated.stderr
    assert translated.stdout == "Hello World!\n"
    table = run("translate", "--probs", "你好世界!", cwd=tmp_path)
    assert table.returncode == 0 and "▁Hello" in table.stdout and "</s>" in table.stdout
    # Most demo sentences are learnt by heart, not just the famous one.
    demo = (Path(__file__).resolve().parents[1] / "data" / "demo.tsv").read_text(encoding="utf-8").splitlines()
    sources = [line.split("\t")[0] for line in demo[::10]]
    references = [line.split("\t")[1] for line in demo[::10]]
    batch = run("translate", *sources, cwd=tmp_path)
    correct = sum(out == ref for out, ref in zip(batch.stdout.splitlines(), references))
    assert correct >= 0.8 * len(references), batch.stdout


@pytest.mark.slow
def test_short_real_run_on_tatoeba(tmp_path):
    if not (SHARED_DATA / "train.tsv").exists():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    trained = run(
        "train", SHARED_DATA / "train.tsv", "--src-col", "2", "--tgt-col", "1", "--dev", SHARED_DATA / "dev.tsv",
        "--out", tmp_path / "m", "--max-time", "90s", "--dev-every", "100", "--vocab-size", "4000",
        "--d-model", "128", "--ff", "512", "--layers", "2", "--warmup", "100", cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    lines = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    dev = [line["dev_loss"] for line in lines if "dev_loss" in line]
    # It learns: a model that knew nothing would sit at ln(vocabulary) ≈ 8.3 nats.
    assert len(dev) >= 2 and dev[-1] < dev[0], dev
    assert dev[-1] < 0.6 * math.log(4000), dev
    translated = run("translate", "--model", tmp_path / "m", "我很好。", "谢谢你！", cwd=tmp_path)
    assert translated.returncode == 0
    assert len(translated.stdout.splitlines()) == 2 and all(translated.stdout.splitlines())
