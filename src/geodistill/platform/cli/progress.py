"""Progress bars for long commands (``data synth``, ``data check``, ``eval``), on a terminal only.

The data and eval layers take an optional ``progress(done, total, label)`` callback and know
nothing of consoles; ``console_progress`` turns it into one rich bar per label on stderr when
stderr is a terminal and the user did not pass ``--quiet``. On a pipe, a file or CI it yields
None: the commands' output stays exactly what it was.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import IO

Progress = Callable[[int, int, str], None]


@contextlib.contextmanager
def console_progress(*, quiet: bool = False, stream: IO[str] | None = None) -> Iterator[Progress | None]:
    """A ``progress(done, total, label)`` drawing bars on ``stream`` (stderr), or None when off."""
    stream = stream or sys.stderr
    if quiet or not getattr(stream, "isatty", lambda: False)():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    bars = Bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream, force_terminal=True),
    )
    tasks: dict[str, int] = {}

    def update(done: int, total: int, label: str) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done, total=total)

    with bars:
        yield update
