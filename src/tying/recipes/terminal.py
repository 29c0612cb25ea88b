"""Tables for the terminal that cut nothing (``tying list`` and the reports of ``tying train``,
``compare`` and ``demo``), printed by :func:`tying.cli.failures.print_table`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

__all__ = ["name_table"]

#: The most columns a heading's longest word claims: a longer one folds rather than widen a narrow column.
_HEADING_WORD = 8


def name_table(heads: Sequence[str], body: Sequence[Sequence[str]], title: str | None = None, justify: str = "right") -> Table:
    """A terminal table that cuts nothing: the first column holds names, never wrapped; the others
    (``justify``-ed) wrap between words, each at least as wide as its longest word (rich would
    otherwise cut or drop cells on a narrow terminal; ``print_table`` prints a table wider than
    the terminal as longer lines, which the terminal wraps)."""
    table = Table(title=title)
    for i, head in enumerate(heads):
        column = [cells[i] for cells in body]
        longest = max((len(w) for text in column for w in (text.split() if i else [text])), default=1)
        longest = max(longest, min(max(map(len, head.split()), default=1), _HEADING_WORD))
        table.add_column(head, justify="left" if i == 0 else justify, no_wrap=i == 0, overflow="fold", min_width=longest)  # type: ignore[arg-type]
    for cells in body:
        table.add_row(*cells)
    return table
