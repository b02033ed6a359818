"""tt.data.own_process: a large corpus is prepared in a process of its own, which writes the
same folder this process would, reports its progress and errors here, and never outlives
the process waiting for it."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import pytest

from test_prepare import numbered_pairs, request_for
from conftest import write_tsv
from tt.data import prepare as preparing
from tt.data.errors import UserError
from tt.data.own_process import run_apart
from tt.data.prepare import Progress, prepare
from tt.data.prepared_folder import MANIFEST


class Recorder(Progress):
    """Records every call, and which preparing processes were alive at each stage."""

    def __init__(self, at_stage=None):
        self.calls, self.apart, self.at_stage = [], [], at_stage

    def stage(self, description, total=None):
        self.calls.append(("stage", description, total))
        self.apart.append([p.pid for p in multiprocessing.active_children() if p.name == "tt prepare"])
        if self.at_stage and description.startswith(self.at_stage[0]):
            self.at_stage[1](self.apart[-1])

    def advance(self, pairs):
        self.calls.append(("advance", pairs))

    def note(self, text):
        self.calls.append(("note", text))


@pytest.fixture
def corpus(tmp_path):
    return write_tsv(tmp_path / "corpus.tsv", numbered_pairs(600))


@pytest.fixture
def apart(monkeypatch):
    monkeypatch.setattr(preparing, "APART_MIN_BYTES", 0)  # read here, in the waiting process


def leftovers(folder):
    return sorted(p.name for p in folder.glob(".*tmp-*"))


def test_the_preparing_process_writes_what_this_process_writes(corpus, tmp_path, monkeypatch):
    here, there = Recorder(), Recorder()
    at_home = prepare(request_for(corpus), tmp_path / "here", here)
    monkeypatch.setattr(preparing, "APART_MIN_BYTES", 0)
    away = prepare(request_for(corpus), tmp_path / "there", there)
    assert here.apart == [[]] * len(here.apart) and all(len(pids) == 1 for pids in there.apart)
    assert there.calls == here.calls  # every stage and count arrived, in order
    manifests = [json.loads((data.folder / MANIFEST).read_text()) for data in (at_home, away)]
    assert manifests[0] == manifests[1]  # the same files, byte for byte (their sha256 are in it)
    assert away.reused is False and away.train_pairs == at_home.train_pairs and away.dev == at_home.dev
    assert not multiprocessing.active_children()


def test_a_given_tokenizer_crosses_to_the_preparing_process(corpus, tmp_path, apart):
    first = prepare(request_for(corpus), tmp_path / "first")
    again = prepare(request_for(corpus, tokenizer=first.tokenizer), tmp_path / "again")  # as --resume asks
    assert again.tokenizer.to_files() == first.tokenizer.to_files()
    assert not (tmp_path / "again" / "tokenizer.model").exists()  # a given tokenizer is not saved again
    files = [json.loads((data.folder / MANIFEST).read_text())["files"] for data in (first, again)]
    del files[0]["tokenizer.model"]
    assert files[0] == files[1]  # the same shards and dev file, encoded there with the tokenizer given here


def test_a_user_error_there_is_the_same_one_line_here(tmp_path, apart):
    corpus = write_tsv(tmp_path / "corpus.tsv", [("好", "x" * 5000)] * 5)  # every pair too long
    with pytest.raises(UserError, match="no usable pairs"):
        prepare(request_for(corpus), tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()  # created by this attempt: removed whole


def test_a_killed_preparing_process_is_one_clear_error_and_nothing_half_written(corpus, tmp_path, apart):
    folder = tmp_path / "prepared"
    kill = Recorder(at_stage=("tokenizing", lambda pids: os.kill(pids[0], signal.SIGKILL)))
    with pytest.raises(UserError, match="stopped: its process ended unexpectedly"):
        prepare(request_for(corpus), folder, kill)
    assert not folder.exists() and not multiprocessing.active_children()
    assert prepare(request_for(corpus), folder).train_pairs > 0  # and the next attempt succeeds


def test_interrupting_the_wait_stops_the_preparing_process(corpus, tmp_path, apart):
    folder = tmp_path / "prepared"
    folder.mkdir()

    def interrupt(pids):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(request_for(corpus), folder, Recorder(at_stage=("training the SentencePiece", interrupt)))
    assert not multiprocessing.active_children()  # joined: it exited as the pipe closed
    assert leftovers(folder) == [] and not (folder / MANIFEST).exists()  # the folder existed: kept, but empty of this attempt


def stage_then_sleep(seconds, progress):
    progress.stage("sleeping")
    time.sleep(seconds)


def test_the_preparing_process_exits_as_soon_as_the_pipe_closes():
    """Even in the middle of long work that sends nothing (SentencePiece's training): here a sleep."""
    seen = []

    def interrupt(pids):
        seen.extend(p for p in multiprocessing.active_children() if p.pid in pids)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_apart(stage_then_sleep, (600,), Recorder(at_stage=("sleeping", interrupt)))
    assert len(seen) == 1 and seen[0].exitcode == 1  # exited on its own (os._exit(1)); -9 had it been killed


def fill_the_disk(path: str, progress) -> None:
    raise OSError(28, "No space left on device", path)


def test_a_full_disk_there_is_the_same_one_line_here(corpus, tmp_path, apart, monkeypatch):
    with pytest.raises(OSError) as raised:  # crossed back as the error it was
        run_apart(fill_the_disk, (str(tmp_path / "x"),), Recorder())
    assert (raised.value.errno, raised.value.strerror, raised.value.filename) == (28, "No space left on device", str(tmp_path / "x"))
    monkeypatch.setattr(preparing, "run_apart", lambda *args: fill_the_disk("somewhere", None))
    folder = tmp_path / "prepared"
    with pytest.raises(UserError, match=f"^{folder}: cannot write the prepared data \\(No space left on device\\)$"):
        prepare(request_for(corpus), folder)
    assert not folder.exists()
