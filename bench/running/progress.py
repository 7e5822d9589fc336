"""Progress on stderr for long work: a bar on a terminal, plain lines in a log, nothing when quiet.

Under SLURM, `nohup ... > log` or a pipe there is no terminal to draw a bar on, so progress goes
out as lines (`label: 40/200 (20%), 12 s elapsed, about 48 s left`) at every tenth of the work
and at least every minute (so a job of hours shows it is alive), or at every step when verbose. The level comes from `bench -q` / `bench -v`, else from the
environment: BENCH_QUIET=1 is quiet (what the test suite uses).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

QUIET, NORMAL, VERBOSE = -1, 0, 1
#: longest silence between two progress lines, in seconds
LINE_EVERY_S = 60.0
_level: int | None = None


def set_verbosity(level: int | None) -> None:
    """QUIET, NORMAL or VERBOSE for this process; None leaves it to BENCH_QUIET."""
    global _level
    _level = level


def verbosity() -> int:
    if _level is not None:
        return _level
    return QUIET if os.environ.get("BENCH_QUIET", "") not in ("", "0") else NORMAL


def _line(label: str, done: int, total: int, elapsed: float) -> str:
    text = f"{label}: {done}/{total} ({100 * done // total}%), {elapsed:.0f} s elapsed"
    if 0 < done < total:
        text += f", about {elapsed * (total - done) / done:.0f} s left"
    return text


@contextmanager
def progress_lines(label: str, total: int, done: int = 0, every_step: bool = False,
                   stream: TextIO | None = None, every_s: float | None = None) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; write a line whenever another tenth of `total` is done, or `every_s`
    seconds [default: LINE_EVERY_S] have passed since the last line (or at every step)."""
    out = stream or sys.stderr
    every_s = LINE_EVERY_S if every_s is None else every_s
    start = time.monotonic()
    state = {"done": done, "tenth": 10 * done // total, "last": start}

    def advance(n: int) -> None:
        state["done"] += n
        tenth = 10 * state["done"] // total
        now = time.monotonic()
        if every_step or tenth > state["tenth"] or now - state["last"] >= every_s:
            state["tenth"], state["last"] = tenth, now
            print(_line(label, state["done"], total, now - start), file=out, flush=True)

    yield advance


@contextmanager
def progress_bar(label: str, total: int, done: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` callable: a rich bar on an interactive stderr, lines otherwise."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    level = verbosity()
    if level == QUIET or total == 0:
        yield lambda n: None
        return
    console = Console(stderr=True)
    if not console.is_terminal or level == VERBOSE:
        with progress_lines(label, total, done, every_step=level == VERBOSE) as advance:
            yield advance
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(escape(label), total=total, completed=done)
        yield lambda n: bar.advance(task, n)
