"""The two rich consoles whose reader may go away: what each does then.

A reader that goes away (`tt … | head`) closes the pipe, and the next write fails with
BrokenPipeError. rich's own answer is to exit with code 1 at once; tt's are below.
"""

from __future__ import annotations

import os
import sys
import unicodedata

from rich.console import Console


class OutputConsole(Console):
    """stdout for tables and views (`--probs`, `tt score`, `tt info`, …): a closed pipe ends the
    command as plain output does, exit 0 and nothing more said (`cli.main.user_errors`)."""

    def on_broken_pipe(self) -> None:
        _fall_silent(self, sys.stdout)  # and Python's own flush at exit must not fail again
        raise BrokenPipeError


class TrainingConsole(Console):
    """stderr for `tt train`: when its reader goes away (`tt train … 2>&1 | head`, a `tee` that
    died), training goes on quietly to its limit and saves, instead of rich's default of
    leaving at once and losing every step since the last checkpoint."""

    def __init__(self):
        super().__init__(stderr=True, soft_wrap=True)  # soft wrap: one line even in a pipe

    def on_broken_pipe(self) -> None:
        _fall_silent(self, sys.stderr)  # and nothing else writing to stderr fails either


def _fall_silent(console: Console, stream) -> None:
    """Nothing more from `console`, and `stream`'s descriptor pointed at /dev/null."""
    console.quiet = True
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def printable(text: str) -> str:
    """A user's text as a title shows it: control characters written as \\x1b and the like,
    so that a corpus line cannot clear the screen or retitle the terminal."""
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in text)
