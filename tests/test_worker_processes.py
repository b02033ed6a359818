"""tt.data.worker_processes: answers in task order, errors carried back, no worker left behind."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tt.data.errors import UserError
from tt.data.worker_processes import answers_in_order


def slow_square(task: int) -> tuple[int, int]:
    """Early tasks take longest, so later ones would finish first if order were not kept."""
    time.sleep(0.002 * (20 - task) if task < 20 else 0)
    return task, task * task


def fails_at(task: int) -> int:
    if task == 7:
        raise UserError("corpus.tsv:7: a bad line")
    if task == 9:
        raise ZeroDivisionError("a bug")
    if task == 11:
        os.kill(os.getpid(), signal.SIGKILL)
    return task


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_answers_come_back_in_task_order(workers):
    assert list(answers_in_order(range(40), slow_square, workers)) == [(i, i * i) for i in range(40)]
    assert not multiprocessing.active_children()


def test_fewer_tasks_than_workers_and_none_at_all():
    assert list(answers_in_order(range(2), slow_square, 4)) == [(0, 0), (1, 1)]
    assert list(answers_in_order([], slow_square, 2)) == []
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(
    "tasks, error, message",
    [
        ([1, 2, 7, 3], UserError, "corpus.tsv:7: a bad line"),
        ([1, 9, 2], RuntimeError, "ZeroDivisionError: a bug"),
        ([1, 11, 2], UserError, "a worker process ended unexpectedly"),
    ],
)
def test_a_worker_error_arrives_after_the_answers_before_it(tasks, error, message):
    """A user error keeps its line, a bug brings its traceback, a killed worker a clear line."""
    answers = []
    with pytest.raises(error) as raised:
        for answer in answers_in_order(tasks, fails_at, 2):
            answers.append(answer)
    assert message in str(raised.value)
    assert answers == tasks[: tasks.index(next(t for t in tasks if t in (7, 9, 11)))]
    assert not multiprocessing.active_children()


def test_closing_mid_pass_ends_every_worker():
    with contextlib.closing(answers_in_order(range(1000), slow_square, 2)) as answers:
        assert next(answers) == (0, 0)
    assert not multiprocessing.active_children()


STOPPED_OFTEN = """
import contextlib, sys
from tt.data.worker_processes import answers_in_order
for attempt in range(int(sys.argv[1])):
    with contextlib.closing(answers_in_order(range(50), abs, 2)) as answers:
        for count, _ in enumerate(answers):
            if count == attempt % 7:
                break
print("all stopped")
"""


def test_passes_stopped_midway_again_and_again_never_hang():
    """Stopping a multiprocessing.Pool mid-pass hung once in a few hundred stops here (and once in CI); a hang fails on the time-out."""
    done = subprocess.run(
        [sys.executable, "-c", STOPPED_OFTEN, "150"], capture_output=True, text=True, timeout=180, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "all stopped"


@pytest.mark.parametrize("gone", ["before the task", "before the answer"])
def test_a_worker_whose_main_process_is_gone_ends_quietly(gone):
    """Ctrl-C can end the main process first: its workers must not print tracebacks of their own."""
    from tt.data.worker_processes import _serve

    ours, theirs = multiprocessing.Pipe()
    if gone == "before the answer":
        ours.send(5)
    ours.close()
    handler = signal.getsignal(signal.SIGINT)
    try:
        _serve(theirs, slow_square)  # returns, where it raised BrokenPipeError before
    finally:
        signal.signal(signal.SIGINT, handler)


def test_a_task_for_a_worker_that_died_since_its_last_answer_is_the_one_line_error():
    from collections import deque

    from tt.data.worker_processes import WORKER_GONE, _send_next

    ours, theirs = multiprocessing.Pipe()
    theirs.close()  # the worker's end, gone with it
    with pytest.raises(UserError, match=re.escape(WORKER_GONE)):
        _send_next(iter([1]), ours, deque())
