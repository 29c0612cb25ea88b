"""Help screens with real placeholders and unbroken prose.

Typer shows a parameter's Python type (``<path>``, ``<int range>``, ``<bool>`` beside a flag) and
puts a required argument in braces (``{checkpoint}``), and keeps the line breaks of a docstring's
source in the middle of sentences. :class:`Command` and :class:`Group` (the ``cls`` of every
``tying`` command and group) show ``RECIPE``, ``--out PATH``, ``--set KEY=VALUE``, flags bare,
and each paragraph of help as one line that the terminal wraps.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["Command", "Group"]

#: Placeholders of an option's value by its Python type (typer's ``bare_type``).
_PLACEHOLDERS = {"int": "N", "float": "X", "Path": "PATH", "str": "TEXT"}


def _prose(text: str | None) -> str | None:
    """``text`` dedented, with the line breaks inside each paragraph made spaces."""
    return None if text is None else re.sub(r"(?<!\n)\n(?!\n)", " ", inspect.cleandoc(text))


class _Argument(TyperArgument):
    """An argument shown by its placeholder alone (``RECIPE``), without a type beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _placeholders(params: list[Any]) -> None:
    """Give each of ``params`` without one a placeholder: an argument its name in capitals
    (``[NAMES]...`` when optional and repeatable), an option one for its type's values."""
    for param in params:
        if isinstance(param, TyperArgument) and not isinstance(param, _Argument):
            if param.metavar is None:
                name = (param.name or "").upper()
                param.metavar = (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")
            param.__class__ = _Argument  # typer has no hook for an argument's class; only display changes
        elif isinstance(param, TyperOption) and param.metavar is None:
            # A flag takes no value: an empty placeholder, where typer would show <bool>.
            param.metavar = "" if param.is_flag else _PLACEHOLDERS.get(param.bare_type(), param.bare_type().upper())


class _Readable:
    """What :class:`Command` and :class:`Group` share: prose help and placeholders, the help
    option's included (a mixin before typer's class)."""

    help: str | None
    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _prose(self.help)
        _placeholders(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        _placeholders([option])
        return option


class Command(_Readable, TyperCommand):
    """A ``tying`` sub-command (see the module docstring)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] RECIPE...``: each argument by its placeholder (typer's braces left out)."""
        return [self.options_metavar or "", *(p.metavar or "" for p in self.get_params(ctx) if isinstance(p, _Argument))]


class Group(_Readable, TyperGroup):
    """The ``tying`` command and its groups (see the module docstring)."""
