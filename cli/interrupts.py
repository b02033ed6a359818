"""Ctrl-C and SIGTERM during `tt train`: finish the step, save, say how to resume, exit 130/143.

Two phases:
- before the training loop (reading, cleaning, the tokenizer), nothing worth saving exists
  yet: a signal raises `Interrupted` at once, and the command exits with 128 + signal;
- inside the loop, the first signal only sets `trainer.stop_requested`; the loop finishes the
  step it is in, writes a checkpoint and returns. A second signal (two seconds or more
  later) aborts at once, without saving: the previous checkpoint is still whole, because
  every file is written atomically.

(SIGKILL cannot be caught: atomic writes are what make it safe.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by our handlers; `exit_code` follows the shell's 128 + signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def _handlers(handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (tests may run elsewhere)
        return
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def interrupt_immediately() -> contextlib.AbstractContextManager:
    """SIGINT and SIGTERM both raise `Interrupted` (SIGTERM would otherwise kill silently)."""
    return _handlers(_raise)


REPEAT_SECONDS = 2.0  # a second signal sooner than this is the same request delivered twice


def stop_after_step(trainer) -> contextlib.AbstractContextManager:
    """The first signal asks the trainer to stop between steps; a later second one aborts.

    A signal delivered twice within REPEAT_SECONDS is one request. Under torchrun a Ctrl-C
    reaches each process twice, from the terminal and forwarded by torchrun, sometimes
    seconds apart; and one process leaving on its own would leave the others waiting in a
    collective. So under torchrun repeats are ignored: torchrun itself kills the processes
    if they do not finish in its grace period.
    """
    first = {}

    def request_stop(signum, frame):
        if trainer.stop_requested is not None:
            if not trainer.cluster.distributed and time.monotonic() - first["at"] >= REPEAT_SECONDS:
                raise Interrupted(signum)
            return
        trainer.stop_requested = signum
        first["at"] = time.monotonic()

    return _handlers(request_stop)
