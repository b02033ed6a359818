"""tt.data.parallel_clean: cleaning on all cores gives exactly what one core gives.

The reference is the one-core cleaning as it stood before the work was split across
processes (a plain loop, with Python sets in place of the sorted key arrays). Chunk and
block sizes are lowered so that tiny corpora cross many blocks and de-duplication chunks.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tt.data import clean, parallel_clean
from tt.data.clean import CleaningConfig, CleaningReport, DevPicker, Sieve, pair_key
from tt.data.corpus import CorpusSpec, read_pairs
from tt.data.errors import UserError
from tt.data.normalize import normalize

CONFIG = CleaningConfig(max_chars=12, max_ratio=3.0, ratio_min_chars=4)  # small, so every rule fires
SCORE_KEY = DevPicker(10, seed=5).key


def reference_clean(pairs, config, exclude):
    """One core, pair by pair: rules 1-3 at once, duplicates and dev pairs every CHUNK passed pairs."""
    report, kept, seen, excluded, waiting = CleaningReport(), [], set(), set(exclude), []

    def settle():
        for src, tgt, key, where in waiting:
            if key in seen:
                report.drop("duplicates", where)
            elif key in excluded:
                report.drop("in_dev", where)
            else:
                report.kept += 1
                kept.append((src, tgt))
            seen.add(key)
        waiting.clear()

    for pair in pairs:
        report.read += 1
        src, tgt = normalize(pair.src), normalize(pair.tgt)
        shorter, longer = sorted((len(src), len(tgt)))
        if not src or not tgt:
            report.drop("empty", pair.where)
        elif longer > config.max_chars:
            report.drop("too_long", pair.where)
        elif longer >= config.ratio_min_chars and longer > config.max_ratio * shorter:
            report.drop("ratio", pair.where)
        else:
            waiting.append((src, tgt, pair_key(src, tgt), pair.where))
            if len(waiting) >= clean.CHUNK:
                settle()
    settle()
    return kept, report


def screened_here(spec, config, score_key):
    """The parallel path's blocks and merging, with the worker's function called in this process."""
    layout = parallel_clean.layout_of(spec)
    for block in parallel_clean.blocks(spec):
        yield from parallel_clean.arrived(*parallel_clean.screen_block(layout, config, score_key, block))


def outcome(run):
    """(kept pairs, report with the order of its examples) or the error message."""
    try:
        kept, report = run()
    except UserError as err:
        return str(err)
    return kept, report, list(report.first_dropped.items())


def three_ways(spec, exclude, workers_here=True):
    """The reference, the one-core path and the parallel path (in this process, or on a real pool)."""
    reference = outcome(lambda: reference_clean(read_pairs(spec), CONFIG, exclude))

    def one_core():
        report = CleaningReport()
        return [(s, t) for kept in parallel_clean.clean_corpus(spec, CONFIG, report, exclude, workers=1) for s, t, _ in kept], report

    def parallel():
        report = CleaningReport()
        if workers_here:
            triples = list(Sieve(report, exclude).run(screened_here(spec, CONFIG, SCORE_KEY)))
        else:
            with contextlib.closing(parallel_clean.clean_corpus(spec, CONFIG, report, exclude, SCORE_KEY, workers=2)) as kept:
                triples = [triple for chunk in kept for triple in chunk]
        assert [score for _, _, score in triples] == [source_score(src) for src, _, _ in triples]
        return [(s, t) for s, t, _ in triples], report

    return reference, outcome(one_core), outcome(parallel)


def source_score(src):
    return DevPicker(10, seed=5).score(src)


# ---- corpora written in each layout

SIDE = st.text(st.sampled_from(["a", "b", "Z", " ", "\u3000", "中", "！", "ｆ", "\u200b", "é", "\u0301", "\r"]), max_size=16)
BAD_LINES = {
    "tsv": [b"\xff\xfe oops", "只有一列".encode()],
    "jsonl": [b"\xc3\x28", b'{"src": "a", "tgt": ', b'["a", "b"]', b'{"src": "a"}'],
    "text": [b"\xe4\xb8", b"\x80"],
}


def write_corpus(folder: Path, layout: str, lines: list, bom: bool, bad: list[tuple[int, bytes]], extra: int) -> CorpusSpec:
    """`lines`: (src, tgt) or None for a blank line; `bad`: (position, raw line) put in; `extra`: lines only one file has."""
    if layout == "text":
        sides = [[(pair[i] if pair else "").encode() for pair in lines] for i in (0, 1)]
        for position, raw in bad:
            sides[position % 2].insert(position // 2 % (len(sides[0]) + 1), raw)
            sides[1 - position % 2].insert(position // 2 % (len(sides[0]) + 1), b"fine")
        sides[extra % 2].extend([b"more"] * (extra // 2))
        names = []
        for which, side in zip(("src", "tgt"), sides):
            names.append(str(folder / f"c.{which}"))
            Path(names[-1]).write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"".join(line + b"\n" for line in side))
        return CorpusSpec(src_path=names[0], tgt_path=names[1])
    folder.mkdir(exist_ok=True)
    if layout == "tsv":
        raw = [f"{pair[0]}\t{pair[1]}".encode() if pair else b"" for pair in lines]
    else:
        raw = [json.dumps({"src": pair[0], "tgt": pair[1]}, ensure_ascii=False).encode() if pair else b"  " for pair in lines]
    for position, line in bad:
        raw.insert(position % (len(raw) + 1), line)
    path = folder / f"c.{layout}"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(raw) + (b"\n" if len(raw) % 2 else b""))
    return CorpusSpec(path=str(path))


@st.composite
def corpora(draw):
    layout = draw(st.sampled_from(["tsv", "jsonl", "text"]))
    distinct = draw(st.lists(st.tuples(SIDE, SIDE), min_size=1, max_size=8))
    lines = draw(st.lists(st.one_of(st.none(), st.sampled_from(distinct)), max_size=40))  # repeats: duplicates
    in_dev = draw(st.lists(st.sampled_from(distinct), max_size=3))
    bad = draw(st.lists(st.tuples(st.integers(0, 80), st.sampled_from(BAD_LINES[layout])), max_size=2)) if draw(st.booleans()) else []
    extra = draw(st.integers(0, 5)) if layout == "text" else 0
    exclude = [pair_key(normalize(s), normalize(t)) for s, t in in_dev]
    return layout, lines, draw(st.booleans()), bad, extra, exclude


@settings(max_examples=150, deadline=None)
@given(corpora(), st.integers(1, 9), st.integers(1, 60))
def test_parallel_equals_one_core(corpus, chunk, block_bytes):
    """Kept pairs, their order, the report and its first examples, or the first error: all the same."""
    layout, lines, bom, bad, extra, exclude = corpus
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(clean, "CHUNK", chunk)
        patch.setattr(parallel_clean, "BLOCK_BYTES", block_bytes)
        reference, one_core, parallel = three_ways(write_corpus(Path(folder), layout, lines, bom, bad, extra), exclude)
    assert one_core == reference
    assert parallel == reference


# ---- on real worker processes


def descendants() -> set[int]:
    """Every live process below this one, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(clean, "CHUNK", 7)
    monkeypatch.setattr(parallel_clean, "BLOCK_BYTES", 200)
    monkeypatch.setattr(parallel_clean, "PARALLEL_MIN_BYTES", 0)


def random_lines(seed: int, n: int) -> list:
    rng = random.Random(seed)
    distinct = [("中" * rng.randrange(0, 6) + f"{i}", "ab " * rng.randrange(0, 6) + f"{i}") for i in range(n // 3)]
    return [None if rng.random() < 0.05 else rng.choice(distinct) for _ in range(n)]


@pytest.mark.parametrize("layout", ["tsv", "jsonl", "text"])
def test_worker_processes_give_what_one_core_gives(tmp_path, small_blocks, layout):
    spec = write_corpus(tmp_path, layout, random_lines(1, 400), True, [], 0)
    exclude = [pair_key(normalize(p.src), normalize(p.tgt)) for p in list(read_pairs(spec))[5:9]]
    reference, one_core, parallel = three_ways(spec, exclude, workers_here=False)
    assert isinstance(reference, tuple) and reference[1].duplicates and reference[1].in_dev and reference[1].ratio
    assert reference[1].empty or layout == "jsonl"  # JSONL skips blank lines
    assert one_core == reference and parallel == reference
    assert not multiprocessing.active_children()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes in /proc")
@pytest.mark.parametrize(
    "layout, bad", [("tsv", [(250, b"\xff"), (330, b"one column")]), ("text", [(500, b"\x80"), (700, b"\xe4")]), ("text", [])]
)
def test_the_first_error_in_file_order_wins_and_no_worker_is_left(tmp_path, small_blocks, layout, bad):
    """A bad line in a late block fails with the message one core gives, and every worker is gone."""
    spec = write_corpus(tmp_path, layout, random_lines(2, 400), False, bad, 0 if bad else 7)
    expected = outcome(lambda: reference_clean(read_pairs(spec), CONFIG, []))
    assert isinstance(expected, str) and ":" in expected
    warm_up = write_corpus(tmp_path / "warm", "tsv", random_lines(3, 50), False, [], 0)
    list(parallel_clean.clean_corpus(warm_up, CONFIG, CleaningReport(), workers=2))
    before = descendants()  # the fork server, once started, stays for the next pass
    with pytest.raises(UserError) as err:
        list(parallel_clean.clean_corpus(spec, CONFIG, CleaningReport(), workers=2))
    assert str(err.value) == expected
    assert not multiprocessing.active_children()
    assert descendants() <= before


def test_an_interrupted_pass_stops_its_workers(tmp_path, small_blocks):
    """Ctrl-C while the main process writes: KeyboardInterrupt goes through, the workers stop."""
    spec = write_corpus(tmp_path, "tsv", random_lines(4, 2000), False, [], 0)
    with pytest.raises(KeyboardInterrupt):
        with contextlib.closing(parallel_clean.clean_corpus(spec, CONFIG, CleaningReport(), workers=2)) as kept:
            for count, _ in enumerate(kept):
                if count == 10:
                    raise KeyboardInterrupt
    assert not multiprocessing.active_children()


def test_small_corpora_and_one_core_stay_in_this_process(tmp_path, monkeypatch):
    """Below the threshold, or with one core, no worker process is started."""
    spec = write_corpus(tmp_path, "tsv", random_lines(5, 100), False, [], 0)
    started = []
    monkeypatch.setattr(parallel_clean, "screened_in_parallel", lambda *args: started.append(args) or iter(()))
    list(parallel_clean.clean_corpus(spec, CONFIG, CleaningReport(), workers=2))
    monkeypatch.setattr(parallel_clean, "PARALLEL_MIN_BYTES", 0)
    list(parallel_clean.clean_corpus(spec, CONFIG, CleaningReport(), workers=1))
    assert not started
    list(parallel_clean.clean_corpus(spec, CONFIG, CleaningReport(), workers=2))
    assert len(started) == 1


def test_prepare_writes_the_same_folder_either_way(tmp_path, small_blocks):
    """Cleaned on one core or on workers: the same report, dev pairs, tokenizer and shards (their digests)."""
    from tt.data.prepare import prepare
    from tt.data.prepared_folder import MANIFEST, PrepareRequest
    from tt.data.tokenizer import TokenizerConfig

    rng = random.Random(6)
    lines = [(f"我有{i % 900}本书" + "。" * rng.randrange(3), f"I have {i % 900} books") for i in range(1200)]
    spec = write_corpus(tmp_path, "tsv", lines + [None, ("好", "x" * 40)], False, [], 0)
    request = PrepareRequest(
        train=spec, dev=None, cleaning=CleaningConfig(), tokenizer_config=TokenizerConfig(vocab_size=300), seed=3, dev_size=None
    )
    manifests = {}
    for workers in (1, 2):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(parallel_clean, "usable_cores", lambda: workers)
            prepare(request, tmp_path / f"on-{workers}")
        manifests[workers] = json.loads((tmp_path / f"on-{workers}" / MANIFEST).read_text())
    assert manifests[1]["report"]["duplicates"] and manifests[1]["report"]["ratio"] and manifests[1]["dev_pairs"]
    assert manifests[2] == manifests[1]


MAIN_SCRIPT = """
import sys
with open(sys.argv[1], "a") as marker:
    print(__name__, file=marker)  # a worker that ran this script again would add a line
from tt.data import parallel_clean
from tt.data.clean import CleaningConfig, CleaningReport
from tt.data.corpus import CorpusSpec
if __name__ == "__main__":
    parallel_clean.PARALLEL_MIN_BYTES, parallel_clean.BLOCK_BYTES = 0, 100
    report = CleaningReport()
    list(parallel_clean.clean_corpus(CorpusSpec(path=sys.argv[2]), CleaningConfig(), report, workers=2))
    print(report.kept)
"""


def test_workers_do_not_run_the_main_script_again(tmp_path):
    """Started from a script (as the `tt` command is, which imports torch), the workers skip it."""
    import subprocess
    import sys

    script, marker = tmp_path / "main.py", tmp_path / "marker"
    script.write_text(MAIN_SCRIPT)
    spec = write_corpus(tmp_path, "tsv", [(f"句子{i}", f"sentence {i}") for i in range(50)], False, [], 0)
    done = subprocess.run([sys.executable, str(script), str(marker), spec.path], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["50"]
    assert marker.read_text().split() == ["__main__"]
