"""Tables on terminals of any width: names (recipes, runs) are never cut, other columns wrap."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from tying.cli import train as train_cli
from tying.cli.failures import print_table
from tying.recipes import builtin_recipes
from tying.recipes.report import Row, rich_table

WIDTHS = [60, 80, 100, 120]


def _terminal(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=True, color_system=None, legacy_windows=False), buffer


def _cells(text: str, border: str = "│") -> list[list[str]]:
    """The cells of a boxed table's rows (``border``: ``┃`` for the header), each cell's lines
    joined without spaces (a wrapped or folded cell reads as its characters in order)."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith(border):
            continue
        cells = [c.strip() for c in line.strip(border).split(border)]
        if not rows or cells[0] and border == "│":
            rows.append(cells)
        else:  # a continuation line of the row above
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    return [[c.replace(" ", "") for c in row] for row in rows]


def _whole(text: str, width: int, fits: bool) -> None:
    """No cell cut with an ellipsis, every line of the table as long as the others (no cell
    dropped); within ``width`` where the table ``fits``, else wider (the terminal wraps lines)."""
    lines = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert "…" not in text and len(set(map(len, lines))) == 1
    assert (len(lines[0]) <= width) == fits, (len(lines[0]), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_list_prints_every_recipe_name_whole_with_labelled_data(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    console, buffer = _terminal(width)
    monkeypatch.setattr(train_cli, "Console", lambda *a, **k: console)
    train_cli.list_recipes()
    text = buffer.getvalue()
    _whole(text, width, fits=width >= 120)  # the longest words of the columns take 102 columns
    rows = _cells(text)
    assert [row[0] for row in rows] == list(builtin_recipes())  # each name whole on its first line
    assert _cells(text, "┃")[0][:3] == ["recipe", "task", "datasettings"]
    assert dict((row[0], row[2]) for row in rows)["ptb-small-tied"] == 'corpus="ptb"'


def _record(name: str) -> dict:
    return {
        "name": name, "task": "lm", "unit": "tokens", "history": [{"epoch": 1, "valid_ppl": 1.0}], "total_parameters": 12_345_678,
        "unique_parameters": 6_543_210, "valid": {"ppl": 123.45}, "test": {"ppl": 120.0}, "tokens_per_s": 12_345.0, "wall_s": 3600.0,
        "recipe": {"paper": {"test_ppl": 110.0}, "train": {"epochs": 1}, "schedule_epochs": 1},
    }  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
def test_report_tables_print_run_names_whole(width: int) -> None:
    names = ["ptb-small-tied-pr (3 seeds)", "digits-ae-untied-equal-params"]
    rows = [Row(name, [_record(name)]) for name in names]
    console, buffer = _terminal(width)
    for table in rich_table(rows, title="report"):
        print_table(console, table)
    text = buffer.getvalue()
    _whole(text, width, fits=width >= 120)
    rows = _cells(text)
    assert [row[0] for row in rows] == [name.replace(" ", "") for name in names]
    assert all(row[1] == "12,345,678" for row in rows)  # numbers wrap or fold, never cut
