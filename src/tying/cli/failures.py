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


def _fit(console: Console, table: Table, width: int) -> int:
    """Fix the widths of ``table``'s columns for a terminal ``width`` columns wide; returns the
    table's width. Each column gets its least width (``min_width``, else its longest word: nothing
    is cut or folded) plus a share of the room left, in proportion to how much more its longest
    line needs. Where even the least widths do not fit, the table is wider than the terminal."""
    options = console.options.update_width(10**5)
    spans = []
    for column in table.columns:
        sizes = [Measurement.get(console, options, text) for text in (column.header, *column.cells)]
        least = column.min_width or max(m.minimum for m in sizes)
        spans.append((least, max(least, *(m.maximum for m in sizes))))
    overhead = Measurement.get(console, options, table).maximum - sum(most for _, most in spans)
    room = max(0, width - overhead - sum(least for least, _ in spans))
    wanted = sum(most - least for least, most in spans) or 1
    for column, (least, most) in zip(table.columns, spans, strict=True):
        column.width = least + min(most - least, room * (most - least) // wanted)
    return overhead + sum(column.width or 0 for column in table.columns)


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole, never cut: on a terminal within its width where every column's
    longest word fits (else wider, and the terminal wraps the lines: no cell is dropped or ends
    in an ellipsis); piped to a file or another program (where rich assumes 80 columns) at its
    natural width, never cut or wrapped."""
    natural = Measurement.get(console, console.options.update_width(10**5), table).maximum
    if not console.is_terminal:
        Console(file=console.file, width=max(natural, console.width), force_terminal=False, no_color=True).print(table)
    elif natural <= console.width:
        console.print(table)
    else:
        width = _fit(console, table, console.width)
        if width <= console.width:
            console.print(table)
        else:  # a console prints no wider than itself: one as wide as the table, on the same terminal
            Console(file=console.file, width=width, force_terminal=True, color_system=console.color_system).print(table)  # type: ignore[arg-type]
