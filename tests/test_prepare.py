"""tt.data.prepare / tt.data.shards / `tt prepare`: shards on disk give the in-memory batches;
a prepared folder is reused when it matches, and rebuilt when it is stale or damaged."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from conftest import TINY_MODEL_OPTIONS, tiny_pairs, write_tsv
from tt.cli.main import app
from tt.data.batches import BatchStream, plan_batches
from tt.data.clean import CleaningConfig, DevPicker
from tt.data.corpus import CorpusSpec
from tt.data.errors import UserError
from tt.data.prepare import Progress, Reservoir, prepare
from tt.data.prepared_folder import MANIFEST, PrepareRequest
from tt.data.tokenizer import EOS_ID, TokenizerConfig

runner = CliRunner()


class Notes(Progress):
    def __init__(self):
        self.notes = []

    def note(self, text):
        self.notes.append(text)


def numbered_pairs(n: int) -> list[tuple[str, str]]:
    rng = random.Random(n)
    return [(f"我有{i}本书" + "。" * rng.randrange(3), f"I have {i} books" + "!" * rng.randrange(3)) for i in range(n)]


def request_for(corpus, **changes) -> PrepareRequest:
    values = dict(
        train=CorpusSpec(path=str(corpus)), dev=None, cleaning=CleaningConfig(),
        tokenizer_config=TokenizerConfig(vocab_size=300, joint=True), seed=3, dev_size=None,
    )
    return PrepareRequest(**{**values, **changes})


@pytest.fixture
def corpus(tmp_path):
    return write_tsv(tmp_path / "corpus.tsv", numbered_pairs(1200))


def test_shards_give_exactly_the_batches_of_the_in_memory_lists(corpus, tmp_path):
    data = prepare(request_for(corpus), tmp_path / "prepared")
    assert data.train_pairs == 1200 - 60 and len(data.dev) == 60  # 5 % held out
    lines = [line.split("\t") for line in corpus.read_text(encoding="utf-8").splitlines()]
    held_out = {src for src, _ in data.dev}
    train = [(s, t) for s, t in lines if s not in held_out]
    src_lists = [data.tokenizer.encode_src(s) for s, _ in train]
    tgt_lists = [data.tokenizer.encode_tgt(t) for _, t in train]
    on_disk = BatchStream(data.src, data.tgt, 200, seed=5)
    in_memory = BatchStream(src_lists, tgt_lists, 200, seed=5)
    n = on_disk.batches_per_epoch() + 3  # into the second epoch
    for _, (rows_a, rows_b) in zip(range(n), zip(on_disk.rows(), in_memory.rows())):
        a, b = on_disk.batch(rows_a), in_memory.batch(rows_b)
        for name in ("src", "tgt_in", "tgt_out", "src_pad_mask"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert on_disk.epoch == in_memory.epoch == 1


def reference_plan(lengths, batch_tokens, seed, max_sentences=1024):
    """The plan written plainly with lists and one sort: the array planner must agree."""
    shuffled = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    place = {index: position for position, index in enumerate(shuffled)}  # equal lengths: in shuffled order
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][1], lengths[i][0], place[i]))
    rng = random.Random(seed)
    batches, current, longest_src, longest_tgt = [], [], 0, 0
    for index in order:
        src_len, tgt_len = lengths[index]
        grow_src, grow_tgt = max(longest_src, src_len), max(longest_tgt, tgt_len)
        rows = len(current) + 1
        if current and (rows * max(grow_src, grow_tgt) > batch_tokens or rows > max_sentences):
            batches.append(current)
            current, grow_src, grow_tgt = [], src_len, tgt_len
        current.append(index)
        longest_src, longest_tgt = grow_src, grow_tgt
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), max_size=150),
    batch_tokens=st.sampled_from([1, 16, 50, 300, 4000]),
    seed=st.integers(0, 2**31 - 1),
    max_sentences=st.sampled_from([1, 4, 1024]),
)
def test_the_array_planner_equals_the_list_planner(lengths, batch_tokens, seed, max_sentences):
    assert plan_batches(lengths, batch_tokens, seed, max_sentences) == reference_plan(lengths, batch_tokens, seed, max_sentences)


def test_a_matching_folder_is_reused_untouched(corpus, tmp_path):
    folder = tmp_path / "prepared"
    first = prepare(request_for(corpus), folder)
    times = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = prepare(request_for(corpus), folder)
    assert not first.reused and again.reused
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == times
    assert [again.src[i] for i in range(5)] == [first.src[i] for i in range(5)]


def test_a_folder_prepared_while_waiting_for_the_lock_is_reused(corpus, tmp_path, monkeypatch):
    """Two processes asked for the same folder: the one that waited for the other's lock
    finds the folder ready and reuses it, instead of preparing it all over again."""
    import tt.data.prepare as preparing

    folder = tmp_path / "prepared"
    prepare(request_for(corpus), folder)  # the other process's work, done while we waited
    times = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    real = preparing.open_if_valid
    answers = iter([None])  # our first look came before the other process finished

    def looked_too_early(*args, **kwargs):
        return next(answers, None) or real(*args, **kwargs)

    monkeypatch.setattr(preparing, "open_if_valid", looked_too_early)
    again = prepare(request_for(corpus), folder)
    assert again.reused
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == times


def test_stopped_while_waiting_for_the_lock_it_leaves_the_other_process_work_alone(corpus, tmp_path, monkeypatch):
    """Ctrl-C on a second `tt prepare` of a folder another process is preparing."""
    import fcntl

    folder = tmp_path / "prepared"
    folder.mkdir()
    theirs = folder / ".cleaned.tsv.tmp-999"  # the preparing process's half-written file
    theirs.write_text("你好\tHello\n")
    holder = open(folder / ".lock", "a")
    fcntl.flock(holder, fcntl.LOCK_EX)  # held, as by the other process
    real = fcntl.flock

    def interrupted_while_waiting(handle, flags):
        if flags == fcntl.LOCK_EX:  # the blocking wait
            raise KeyboardInterrupt
        return real(handle, flags)

    monkeypatch.setattr(fcntl, "flock", interrupted_while_waiting)
    notes = Notes()
    with pytest.raises(KeyboardInterrupt):
        prepare(request_for(corpus), folder, notes)
    assert notes.notes == [f"{folder}: another process is preparing it; waiting for it to finish"]
    assert theirs.read_text() == "你好\tHello\n"
    holder.close()


def damage_truncate(folder):
    path = folder / "tgt.ids"
    path.write_bytes(path.read_bytes()[:-2])


def damage_edit(folder):
    path = folder / "src.ids"
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))


def damage_killed_halfway(folder):
    (folder / MANIFEST).unlink()  # the manifest is written last: a killed preparation has none
    (folder / ".src.ids.tmp-99999").write_bytes(b"half")


@pytest.mark.parametrize(
    "damage, reason",
    [(damage_truncate, "truncated"), (damage_edit, "SHA-256"), (damage_killed_halfway, "unfinished")],
)
def test_a_damaged_folder_is_detected_and_rebuilt(corpus, tmp_path, damage, reason):
    folder = tmp_path / "prepared"
    first = prepare(request_for(corpus), folder)
    expected = [first.src[i] for i in range(len(first.src))]
    damage(folder)
    notes = Notes()
    rebuilt = prepare(request_for(corpus), folder, notes)
    assert not rebuilt.reused
    assert len(notes.notes) == 1 and reason in notes.notes[0], notes.notes
    assert [rebuilt.src[i] for i in range(len(rebuilt.src))] == expected  # nothing lost
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_a_shard_cut_short_while_training_reads_it_is_one_clear_error(corpus, tmp_path):
    """Rows are read from disk as batches need them: a file truncated after the check
    says so in one line instead of handing out a short row."""
    data = prepare(request_for(corpus), tmp_path / "prepared")
    last = len(data.tgt) - 1
    assert data.tgt[last][-1] == EOS_ID
    path = tmp_path / "prepared" / "tgt.ids"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(UserError, match="tgt.ids: shorter than its manifest says"):
        data.tgt[last]


def test_reading_rows_does_not_map_the_shards(corpus, tmp_path):
    """The shards are read, not memory-mapped: a mapped page counts in the process's resident
    memory, and over a long run a map of a large corpus held all of it."""
    data = prepare(request_for(corpus), tmp_path / "prepared")
    rows = [data.src[i] for i in range(len(data.src))]
    assert len(rows) == data.train_pairs
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(tmp_path / "prepared") not in maps.read_text()


def test_a_changed_corpus_or_option_is_not_reused(corpus, tmp_path):
    folder = tmp_path / "prepared"
    prepare(request_for(corpus), folder)
    notes = Notes()
    assert not prepare(request_for(corpus, cleaning=CleaningConfig(max_chars=30)), folder, notes).reused
    assert "cleaning options" in notes.notes[-1]
    write_tsv(corpus, numbered_pairs(1100))
    changed = prepare(request_for(corpus, cleaning=CleaningConfig(max_chars=30)), folder, notes)
    assert not changed.reused and "corpus changed" in notes.notes[-1]
    swapped = prepare(request_for(corpus, train=CorpusSpec(path=str(corpus), src_col=2, tgt_col=1), cleaning=CleaningConfig(max_chars=30)), folder, notes)
    assert not swapped.reused
    assert notes.notes[-1].endswith(
        "the corpus is read otherwise than when it was prepared (one file, format from the extension, columns 2 and 1 now; "
        "one file, format from the extension, columns 1 and 2 then); preparing again"
    )


def test_a_resumed_request_refuses_other_bytes_before_touching_the_folder(corpus, tmp_path):
    folder = tmp_path / "prepared"
    made = prepare(request_for(corpus), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert prepare(request_for(corpus, same_data_as=made.made_from), folder).reused
    pairs = numbered_pairs(1200)
    pairs[7] = ("我有猫", "I have a cat")
    write_tsv(corpus, pairs)
    with pytest.raises(UserError, match="the corpus changed since this run started; --resume needs the data the run started with$"):
        prepare(request_for(corpus, same_data_as=made.made_from), folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before



def test_a_folder_rebuilt_with_separate_vocabularies_never_reads_the_old_joint_one(corpus, tmp_path):
    """The joint tokenizer.model of the first preparation stays in the folder; the manifest
    says which files are the tokenizer now, on the rebuild and on every reuse after it."""
    folder = tmp_path / "prepared"
    assert prepare(request_for(corpus), folder).tokenizer.joint
    separate = TokenizerConfig(vocab_size=300, joint=False)
    rebuilt = prepare(request_for(corpus, tokenizer_config=separate), folder)
    reused = prepare(request_for(corpus, tokenizer_config=separate), folder)
    assert (folder / "tokenizer.model").exists() and reused.reused
    assert not rebuilt.tokenizer.joint and not reused.tokenizer.joint

def test_the_dev_split_does_not_depend_on_the_corpus_size(tmp_path):
    """A pair held out of a corpus stays held out of a longer one with the same dev size."""
    small = write_tsv(tmp_path / "small.tsv", numbered_pairs(1200))
    large = write_tsv(tmp_path / "large.tsv", numbered_pairs(1200) + [(f"他有{i}只猫", f"He has {i} cats") for i in range(800)])
    dev_small = prepare(request_for(small, dev_size=40), tmp_path / "a").dev
    dev_large = prepare(request_for(large, dev_size=40), tmp_path / "b").dev
    assert len(dev_small) == len(dev_large) == 40
    assert set(dev_large) - set(dev_small) <= {pair for pair in dev_large if pair[0].startswith("他")}


def test_dev_sources_are_cut_as_translation_cuts_them(trained_model):
    from tt.data.prepared_folder import PreparedCorpus
    from tt.data.tokenizer import EOS_ID, Tokenizer

    tokenizer = Tokenizer.load(trained_model)
    dev = [("我有三本书。" * 20, "I have three books. " * 20), ("你好", "Hello")]
    data = PreparedCorpus(trained_model, tokenizer, None, None, dev, None, None)
    src, tgt, references = data.dev_ids(10)
    assert src[0] == tokenizer.fit_source(tokenizer.encode_src(dev[0][0]), 10)
    assert len(src[0]) == 10 and src[0][-1] == EOS_ID  # the model only ever saw sources that end in </s>
    assert src[1] == tokenizer.encode_src("你好")  # a short one is untouched
    assert tgt[0] == tokenizer.encode_tgt(dev[0][1])[:10] and references == [t for _, t in dev]


# ---- the dev split, as prepare applies it (DevPicker, then every pair of a held-out source leaves training)


def dev_split(tmp_path, pairs, dev_size: int, seed: int):
    """(the training pairs as the shards hold them, in order; the dev pairs) of one preparation."""
    tmp_path.mkdir(exist_ok=True)
    corpus = write_tsv(tmp_path / f"split-{dev_size}-{seed}.tsv", pairs)
    data = prepare(request_for(corpus, dev_size=dev_size, seed=seed), tmp_path / f"prepared-{dev_size}-{seed}")
    train_rows = [list(data.src[i]) for i in range(len(data.src))]
    by_ids = {tuple(data.tokenizer.encode_src(src)): (src, tgt) for src, tgt in pairs}
    return [by_ids[tuple(row)] for row in train_rows], data.dev


def sentence_pairs(n: int) -> list[tuple[str, str]]:
    return [(f"句子{i}", f"sentence {i}") for i in range(n)]


def test_dev_split_sizes_and_order(tmp_path):
    """Distinct sources: dev holds dev_size pairs, training the rest in corpus order."""
    pairs = sentence_pairs(50)
    train, dev = dev_split(tmp_path, pairs, 7, seed=1)
    assert len(dev) == 7 and len(train) == 43
    assert sorted(train + dev) == sorted(pairs)
    assert train == [pair for pair in pairs if pair not in dev]


def test_dev_split_is_seeded(tmp_path):
    """The same seed picks the same dev set; another seed picks another."""
    pairs = sentence_pairs(100)
    assert dev_split(tmp_path, pairs, 10, seed=3)[1] == dev_split(tmp_path / "again", pairs, 10, seed=3)[1]
    assert dev_split(tmp_path, pairs, 10, seed=3)[1] != dev_split(tmp_path, pairs, 10, seed=4)[1]


def test_dev_split_removes_every_copy_of_a_dev_source(tmp_path):
    """No source in dev appears in training, even when it has several translations."""
    pairs = [(f"句子{i % 10}", f"translation {i}") for i in range(40)]  # each source 4 times
    train, dev = dev_split(tmp_path, pairs, 3, seed=5)
    dev_sources = {src for src, _ in dev}
    assert len(dev) == len(dev_sources) == 3
    assert not dev_sources & {src for src, _ in train}
    assert len(train) == 40 - 3 * 4
    report = prepare(request_for(tmp_path / "split-3-5.tsv", dev_size=3, seed=5), tmp_path / "prepared-3-5").report
    assert (report.kept, report.in_dev) == (len(train) + len(dev), 3 * 3)  # the summary adds up: kept = train + dev


def test_dev_size_zero_trains_on_everything(tmp_path):
    pairs = sentence_pairs(10)
    assert dev_split(tmp_path, pairs, 0, seed=1) == (pairs, [])


@pytest.mark.parametrize("dev_size", [10, 11])  # every distinct source, or more than there are
def test_a_dev_size_that_takes_every_source_is_refused_before_the_tokenizer(tmp_path, dev_size, monkeypatch):
    import tt.data.prepare as preparing

    def never(*args, **kwargs):
        raise AssertionError("a tokenizer was trained for a corpus with nothing left to train on")

    monkeypatch.setattr(preparing, "train_tokenizer", never)
    pairs = [(f"句子{i % 10}", f"translation {i}") for i in range(30)]  # 10 sources, 3 pairs each
    with pytest.raises(UserError, match=f"--dev-size {dev_size} leaves no pairs to train on"):
        dev_split(tmp_path, pairs, dev_size, seed=1)
    assert not list(tmp_path.glob("prepared-*"))  # the folder it created is gone again


def test_uint16_ids_and_lengths_on_disk(corpus, tmp_path):
    data = prepare(request_for(corpus), tmp_path / "prepared")
    assert data.src.dtype == np.uint16 and data.src.lengths.dtype == np.uint16
    assert (tmp_path / "prepared" / "src.ids").stat().st_size == 2 * int(np.asarray(data.src.lengths).sum())


# ---- the command line


def test_tt_prepare_then_train_reuses_it(tmp_path):
    corpus = write_tsv(tmp_path / "corpus.tsv", tiny_pairs())
    folder = tmp_path / "data"
    first = runner.invoke(app, ["prepare", str(corpus), "--out", str(folder), "--vocab-size", "300", "--joint-vocab", "--seed", "3"])
    assert first.exit_code == 0, first.output
    assert f"prepared {folder}: 80 train pairs" in first.stderr
    times = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = runner.invoke(app, ["prepare", str(corpus), "--out", str(folder), "--vocab-size", "300", "--joint-vocab", "--seed", "3"])
    assert again.exit_code == 0 and "reusing" in again.stderr
    out = tmp_path / "model"
    trained = runner.invoke(app, ["train", str(corpus), "--prepared", str(folder), "--out", str(out), "--max-steps", "2", *TINY_MODEL_OPTIONS])
    assert trained.exit_code == 0, trained.output
    assert f"reusing the prepared data in {folder}" in trained.stderr
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == times
    assert not (out / "prepared").exists()


def test_resume_reads_the_prepared_folder_the_run_used(tmp_path):
    corpus = write_tsv(tmp_path / "corpus.tsv", tiny_pairs())
    folder, out = tmp_path / "data", tmp_path / "model"
    first = runner.invoke(app, ["train", str(corpus), "--prepared", str(folder), "--out", str(out), "--max-steps", "2", *TINY_MODEL_OPTIONS])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert f"reusing the prepared data in {folder.resolve()}" in resumed.stderr
    assert not (out / "prepared").exists()


def test_train_with_prepared_data_but_no_corpus_is_refused_and_leaves_the_folder_alone(tmp_path):
    corpus = write_tsv(tmp_path / "corpus.tsv", tiny_pairs())
    folder = tmp_path / "data"
    assert runner.invoke(app, ["prepare", str(corpus), "--out", str(folder), "--vocab-size", "300"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = runner.invoke(app, ["train", "--prepared", str(folder), "--out", str(tmp_path / "model"), "--max-steps", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        "error: --prepared needs the corpus it was prepared from, given as to `tt prepare` (without one, tt trains the built-in demo)"
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not (tmp_path / "model").exists()


def test_a_prepared_folder_below_a_file_names_the_file(tmp_path):
    corpus = write_tsv(tmp_path / "corpus.tsv", tiny_pairs())
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["prepare", str(corpus), "--out", str(tmp_path / "afile" / "x")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path}/afile/x: {tmp_path}/afile is a file, not a folder for prepared data"


def test_tt_prepare_bad_input_is_one_line(tmp_path):
    corpus = tmp_path / "bad.tsv"
    corpus.write_text("你好\tHello\n世界\n", encoding="utf-8")
    result = runner.invoke(app, ["prepare", str(corpus), "--out", str(tmp_path / "data")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: {corpus}:2: expected at least 2 tab-separated fields (--src-col 1, --tgt-col 2), found 1"
    ]
    assert not (tmp_path / "data").exists()


def test_tt_prepare_refuses_a_model_folder(trained_model, tmp_path):
    corpus = write_tsv(tmp_path / "corpus.tsv", tiny_pairs())
    before = (trained_model / "tokenizer.model").read_bytes()
    result = runner.invoke(app, ["prepare", str(corpus), "--out", str(trained_model), "--vocab-size", "300"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--out {trained_model}" in lines[0] and "model" in lines[0], result.stderr
    assert (trained_model / "tokenizer.model").read_bytes() == before
    assert not (trained_model / "manifest.json").exists()


def test_resume_reuses_the_runs_prepared_data(tmp_path, corpus_file):
    out = tmp_path / "model"
    assert runner.invoke(app, ["train", str(corpus_file), "--out", str(out), "--max-steps", "2", *TINY_MODEL_OPTIONS]).exit_code == 0
    times = {p.name: p.stat().st_mtime_ns for p in (out / "prepared").iterdir()}
    resumed = runner.invoke(app, ["train", "--resume", "--out", str(out), "--max-steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "reusing the prepared data" in resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (out / "prepared").iterdir()} == times


# ---- the tokenizer's sample (Reservoir) and the dev pick in bulk (DevPicker.offer_many)


def offered_in_pieces(reservoir: Reservoir, items: list, cuts: list[int]) -> list:
    begin = 0
    for end in [*sorted(cuts), len(items)]:
        reservoir.offer_many(items[begin:end])
        begin = max(begin, end)
    return reservoir.items


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 400), size=st.integers(0, 50), seed=st.integers(0, 99), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_the_sample_does_not_depend_on_how_the_stream_is_cut(n, size, seed, cuts):
    items = list(range(n))
    whole = offered_in_pieces(Reservoir(size, seed), items, [])
    assert offered_in_pieces(Reservoir(size, seed), items, [c for c in cuts if c <= n]) == whole
    assert len(whole) == min(n, size) and len(set(whole)) == len(whole)
    if n <= size:
        assert whole == items  # a short stream is kept whole, in order


def test_the_sample_is_uniform():
    """Each of 1,000 items lands in a 100-item sample about 10 % of the time (600 seeds):
    the first, middle and last hundred alike, so the skips favour no part of the stream."""
    n, size, seeds = 1000, 100, 600
    counts = np.zeros(n)
    for seed in range(seeds):
        reservoir = Reservoir(size, seed)
        for begin in range(0, n, 64):
            reservoir.offer_many(list(range(begin, min(n, begin + 64))))
        counts[reservoir.items] += 1
    share = counts / seeds
    for part in (share[:100], share[450:550], share[900:]):
        assert abs(part.mean() - size / n) < 0.01  # the mean of 100 × 600 draws: σ ≈ 0.0012
    assert share.min() > 0.03 and share.max() < 0.18


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.one_of(st.none(), st.integers(0, 30)), max_size=80),
    capacity=st.integers(0, 10),
    cut=st.integers(0, 80),
)
def test_offering_in_bulk_picks_what_offering_one_by_one_picks(scores, capacity, cut):
    kept = [(f"s{i}", f"t{i}", score) for i, score in enumerate(scores)]
    one_by_one, in_bulk = DevPicker(capacity, seed=1), DevPicker(capacity, seed=1)
    for pair in kept:
        one_by_one.offer(*pair)
    in_bulk.offer_many(kept[:cut])
    in_bulk.offer_many(kept[cut:])
    assert sorted(in_bulk.heap) == sorted(one_by_one.heap)
    assert in_bulk.left_out == one_by_one.left_out
    for size in range(capacity + 1):
        assert in_bulk.pick(size) == one_by_one.pick(size)
        assert in_bulk.takes_everything(size) == one_by_one.takes_everything(size)


def test_a_folder_prepared_before_the_side_sizes_existed_is_reused(corpus, tmp_path):
    """A manifest written before --src-vocab-size and --tgt-vocab-size has no such keys: they were the defaults."""
    import json

    folder = tmp_path / "prepared"
    prepare(request_for(corpus), folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    for key in ("src_vocab_size", "tgt_vocab_size"):
        del manifest["tokenizer_config"][key]
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert prepare(request_for(corpus), folder).reused
    resized = TokenizerConfig(vocab_size=300, joint=False, tgt_vocab_size=300)
    assert not prepare(request_for(corpus, tokenizer_config=resized), folder).reused
