"""Preparing a large corpus in a process of its own, so that training starts on a clean heap.

    this process (tt train, tt prepare)            the preparing process
    holds the folder's lock, waits          ◀────  progress: stage, advance, note
    draws the progress bar                  ◀────  done, or the one-line error it met
    closes the pipe (Ctrl-C, or it ended)   ────▶  sees the pipe close and exits at once

Preparation allocates and frees hundreds of MB in small pieces (SentencePiece's work, the
tokenizer's sample, de-duplication's hashes, blocks of text). Freed memory stays with the
process that used it, in pieces the allocator cannot always hand back, and training then
peaks that much higher: at 10 million pairs, training right after preparing in the same
process peaked at 1.14 GB, training on the prepared folder at 1.07 GB. Here everything
preparation used goes away with its process.

The preparing process never outlives this one: it exits as soon as the pipe closes, which
happens when this process stops waiting for any reason, or dies. So it never writes into a
folder whose lock this process no longer holds.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from typing import Any, Callable

from tt.data.errors import UserError
from tt.data.worker_processes import main_script_hidden, start_context

STOP_SECONDS = 10  # how long a preparing process told to stop may take before it is killed


def run_apart(function: Callable[..., Any], args: tuple, progress: Any) -> None:
    """Run `function(*args, progress)` in a new process; its progress calls arrive at `progress`.

    `function` is a module-level function (it crosses to the new process by name) and `args`
    are picklable. A UserError there is raised here with the same line; any other failure
    as a RuntimeError carrying its traceback.
    """
    context = start_context()
    ours, theirs = context.Pipe()
    process = context.Process(target=_run, args=(function, args, theirs), name="tt prepare")
    with main_script_hidden():
        process.start()
    theirs.close()  # only the new process holds that end now: its death closes the pipe
    try:
        while True:
            try:
                kind, payload = ours.recv()
            except EOFError:
                process.join()
                raise UserError(
                    f"preparing the corpus stopped: its process ended unexpectedly (exit code {process.exitcode})"
                ) from None
            if kind == "progress":
                method, values = payload
                getattr(progress, method)(*values)
            elif kind == "done":
                return
            elif kind == "user error":
                raise UserError(payload)
            elif kind == "os error":
                raise OSError(*payload)
            else:
                raise RuntimeError(f"preparing the corpus failed in its own process:\n{payload}")
    finally:
        ours.close()  # tells the preparing process to stop, if it has not
        process.join(STOP_SECONDS)
        if process.is_alive():  # it should have exited at once; never leave it running
            process.kill()
            process.join()


class _SentProgress:
    """The preparing process's Progress: each call goes down the pipe."""

    def __init__(self, connection):
        self.connection = connection

    def stage(self, description: str, total: int | None = None) -> None:
        self.connection.send(("progress", ("stage", (description, total))))

    def advance(self, pairs: int) -> None:
        self.connection.send(("progress", ("advance", (pairs,))))

    def note(self, text: str) -> None:
        self.connection.send(("progress", ("note", (text,))))


def _run(function: Callable[..., Any], args: tuple, connection) -> None:
    # Ctrl-C reaches both processes; the waiting one decides, and closing the pipe stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_the_pipe_closes, args=(connection,), daemon=True).start()
    try:
        function(*args, _SentProgress(connection))
        message = ("done", None)
    except UserError as err:
        message = ("user error", str(err))
    except OSError as err:  # a full disk, say: the waiting process says it as it would its own
        message = ("os error", (err.errno, err.strerror, err.filename))
    except BaseException:
        message = ("failed", traceback.format_exc())
    connection.send(message)


def _exit_when_the_pipe_closes(connection) -> None:
    """The waiting process never sends: recv returns only when it closed the pipe or died."""
    try:
        connection.recv()
    except (EOFError, OSError):
        pass
    os._exit(1)  # at once, even in the middle of SentencePiece's training: nothing here is worth finishing
