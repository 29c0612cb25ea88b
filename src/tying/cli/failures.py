"""How the commands end on expected failures: one line on stderr and a non-zero exit status,
never a traceback; an interrupted training run exits 130 (128 + SIGINT) saying how to resume."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from tying.errors import CheckpointError, TieError

__all__ = ["fail", "expected_errors", "print_table"]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; returns the exit to raise."""
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def expected_errors(resume_hint: str) -> Iterator[None]:
    """Turn expected errors into one line and exit status 1, and an interrupt
    (:class:`tying.training.Interrupted`) into exit 130 with ``resume_hint``."""
    # The experiments extra: imported here, so that commands without it (inspect) do not need it.
    from tying.data import DataError
    from tying.recipes import RecipeError, RecordError
    from tying.recipes.run import RunFailedError
    from tying.training import Interrupted

    # Bad input (recipe, data, checkpoint, resume), each with a message naming the culprit.
    expected = (RecipeError, RecordError, DataError, FileNotFoundError, CheckpointError, TieError, RunFailedError)
    try:
        yield
    except Interrupted as exc:
        Console(stderr=True).print(f"{escape(str(exc))}; {escape(resume_hint)}", highlight=False, soft_wrap=True)
        raise typer.Exit(Interrupted.exit_status) from None
    except expected as exc:
        raise fail(str(exc)) from None


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole: on a terminal as wide as the terminal allows; piped to a file or
    another program (where rich assumes 80 columns) at its natural width, never cut or wrapped."""
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(10**5), table).maximum
    Console(file=console.file, width=max(width, console.width), force_terminal=False, no_color=True).print(table)
