"""Worker processes for preparation: tasks out in order, answers back in the same order.

    main process                               worker k of n (own pipe each)
    task i  ─────────────────────────────────▶  work(task), one task at a time
    answer i  ◀─────────────────────────────────  the answer, or the error it met

Each worker has a pipe of its own and holds one task at a time: the main process sends a
worker its next task only once it has read that worker's answer. So the processes share no
lock, neither end ever waits on a full pipe that the other is not reading, and a pass can
be stopped at any moment by killing its workers, whatever they are doing. (A
`multiprocessing.Pool` shares one task queue and one answer queue, each with a lock, among
all its workers; stopping one in the middle of a pass hung now and then, about once in a
few hundred passes on a 2-core machine, and once in CI.)

Workers are started by a fork server: a fresh interpreter that imports preparation's worker
modules once, then forks a worker in milliseconds. Forking the main process itself would
copy torch's threads and locks mid-flight, and the workers never import torch.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
import traceback
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from tt.data.errors import UserError

# What the fork server imports before forking workers (numpy, SentencePiece and tt.data, not torch).
PRELOADED = ["tt.data.parallel_clean", "tt.data.parallel_encode"]


def answers_in_order(tasks: Iterable[Any], work: Callable[[Any], Any], workers: int) -> Iterator[Any]:
    """`work(task)` for each task, on `workers` processes, yielded in the order of `tasks`.

    `work` is a picklable callable (a module-level function, a partial of one, or an object
    that pickles small): it crosses to each worker once, when the worker starts. A UserError
    in a worker is raised here with its line, any other failure as a RuntimeError carrying
    the worker's traceback. Exhausting or closing the iterator, or an error, ends every worker.
    """
    tasks = iter(tasks)
    with _started(workers, work) as connections:
        busy: deque = deque()  # the workers holding a task, in the order the tasks were sent
        for connection in connections:
            _send_next(tasks, connection, busy)
        while busy:
            connection = busy.popleft()
            answer = _receive(connection)
            _send_next(tasks, connection, busy)  # before the caller takes its time over the answer
            yield answer


def _send_next(tasks: Iterator[Any], connection, busy: deque) -> None:
    task = next(tasks, _NO_MORE)
    if task is not _NO_MORE:
        try:
            connection.send(task)
        except OSError:  # BrokenPipeError: the worker died since its last answer
            raise UserError(WORKER_GONE) from None
        busy.append(connection)


_NO_MORE = object()
WORKER_GONE = "a worker process ended unexpectedly (killed, perhaps for lack of memory)"


def _receive(connection) -> Any:
    try:
        kind, payload = connection.recv()
    except (EOFError, OSError):  # a worker killed mid-answer closes its pipe, or resets it
        raise UserError(WORKER_GONE) from None
    if kind == "user error":
        raise UserError(payload)
    if kind == "failed":
        raise RuntimeError(f"a worker process failed:\n{payload}")
    return payload


@contextlib.contextmanager
def _started(count: int, work: Callable[[Any], Any]) -> Iterator[list]:
    context = start_context()
    processes, connections = [], []
    try:
        with main_script_hidden():
            for number in range(count):
                ours, theirs = context.Pipe()
                connections.append(ours)
                process = context.Process(target=_serve, args=(theirs, work), name=f"tt worker {number + 1}", daemon=True)
                process.start()
                processes.append(process)
                theirs.close()  # only the worker holds that end now: its death closes the pipe
        yield connections
    finally:
        # Also on an error, a closed iterator or Ctrl-C: no worker outlives the pass. A worker
        # holds nothing that needs cleaning up, so it is killed wherever it is.
        for process in processes:
            process.kill()
        for process in processes:
            process.join()
        for connection in connections:
            connection.close()


def _serve(connection, work: Callable[[Any], Any]) -> None:
    """A worker: answer each task until the main process closes the pipe."""
    # Ctrl-C reaches every process of the terminal: the main process stops the workers, so
    # a worker must not die on its own with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):  # the main process closed the pipe, or is gone (Ctrl-C): done
            return
        try:
            answer = ("answer", work(task))
        except UserError as err:
            answer = ("user error", str(err))
        except Exception:  # a bug: the main process shows where it happened
            answer = ("failed", traceback.format_exc())
        try:
            connection.send(answer)
        except OSError:  # BrokenPipeError: nobody is waiting for it any more
            return


def start_context():
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(PRELOADED)  # no effect once the fork server runs
    return context


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """Keep new processes from running the `tt` script (and so importing torch) again.

    A child started by spawn or a fork server re-runs the parent's __main__ when that was
    a file (the `tt` console script imports the whole CLI); one started with `python -m`
    is left alone. Without `__file__`, multiprocessing leaves the script alone too.
    """
    main = sys.modules["__main__"]
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path
