"""Progress bars on stderr for long work (quiet when BENCH_QUIET is set)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def progress_bar(label: str, total: int, done: int = 0) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` callable; shows a rich progress bar on an interactive stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if os.environ.get("BENCH_QUIET") or not console.is_terminal or total == 0:
        yield lambda n: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)
