"""Terminal rendering: progress bars, summary tables, errors. Rich is loaded here only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cdn_preheat.redact import redact

# Results go to stdout; progress, tables and messages to stderr so that
# `cdn-preheat expand URL > urls.txt` and `--json` output stay clean.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    # Escaped: a message may hold brackets, e.g. pip install 'cdn-preheat[plot]'.
    # soft_wrap: Rich would break lines at 80 columns when stderr is a pipe or a
    # log file, splitting URLs in two; a terminal wraps long lines itself.
    err.print(
        f"[bold red]error:[/] {escape(redact(message))}",
        markup=True,
        highlight=False,
        soft_wrap=True,
    )


def note(message: str) -> None:
    err.print(redact(message), markup=False, soft_wrap=True)


def warning(message: str) -> None:
    note(f"warning: {message}")


class Advance:
    """What :func:`progress` yields: ``advance(n)``, and ``update(...)`` for a new phase."""

    def __init__(self, bar: Progress | None = None, task: Any = None) -> None:
        self._bar, self._task = bar, task

    def __call__(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def update(
        self, description: str, *, completed: int | None = None, total: int | None = None
    ) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=description, completed=completed, total=total)


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool = True) -> Iterator[Any]:
    """A progress bar on stderr; yields an :class:`Advance`. Silent when not a terminal."""
    if not enabled or not err.is_terminal:
        yield Advance()
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield Advance(bar, task)


def table(title: str, rows: Mapping[str, Any]) -> None:
    """A two-column summary table on stderr."""
    grid = Table(title=title, show_header=False, title_justify="left")
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    for key, value in rows.items():
        grid.add_row(key, "-" if value is None else str(value))
    _print_whole(grid)


def grid(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    """A table with headers on stderr."""
    view = Table(title=title, title_justify="left")
    for index, header in enumerate(headers):
        view.add_column(header, justify="left" if index == 0 else "right")
    for row in rows:
        view.add_row(*("-" if v is None else str(v) for v in row))
    _print_whole(view)


def _print_whole(view: Table) -> None:
    """A table on stderr, every cell whole when stderr is not a terminal.

    Rich fits a table to the console, 80 columns when stderr is a pipe or a log
    file: video ids and URLs would be cut ("demo…"). There no one resizes a
    window, so the table takes the width its cells need; a terminal keeps its own.
    """
    if err.is_terminal:
        err.print(view)
        return
    needed = Measurement.get(err, err.options.update_width(100_000), view).maximum
    # A console of that width: Console.print(width=) never goes past the console's.
    Console(stderr=True, highlight=False, width=max(needed, err.width)).print(view)
