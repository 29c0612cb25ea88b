"""Recipe tables derived from configuration dataclasses: one source of truth for model settings.

A model's settings live in its config dataclass (:class:`tying.models.LSTMConfig`, ...): field
names, types, defaults, and :class:`tying.constraints.Range` bounds. :func:`config_table` makes
the strict recipe table of those fields — same types, defaults and bounds, unknown keys refused
— so a ``[model]`` table is never a hand-kept copy; :func:`build_config` makes the dataclass from
a validated table, the task filling in what comes from the data (``vocab_size``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import Field, create_model

from tying.constraints import Range
from tying.training.config import Table

__all__ = ["config_table", "build_config"]

C = TypeVar("C")


def _field(hint: Any, field: dataclasses.Field[Any]) -> tuple[Any, Any]:
    """The pydantic ``(type, Field(...))`` of a dataclass field: its type without the
    :class:`Range` metadata, which becomes the Field's bounds."""
    bounds: dict[str, Any] = {}
    if typing.get_origin(hint) is Annotated:
        hint, *metadata = typing.get_args(hint)
        for item in metadata:
            if isinstance(item, Range):
                bounds |= item.bounds()
    if field.default is not dataclasses.MISSING:
        return hint, Field(field.default, **bounds)
    if field.default_factory is not dataclasses.MISSING:
        return hint, Field(default_factory=field.default_factory, **bounds)
    return hint, Field(**bounds)


def config_table(
    config: type[Any],
    *,
    name: str,
    exclude: Collection[str] = (),
    fields: Mapping[str, tuple[Any, Any]] | None = None,
    doc: str | None = None,
) -> type[Table]:
    """A recipe table (strict types, unknown keys refused, immutable) of the fields of dataclass
    ``config``, with their types, defaults and :class:`~tying.constraints.Range` bounds.

    Args:
        name: the table class's name (in error messages and reprs).
        exclude: fields the task fills in, not the recipe (``"vocab_size"``: from the data).
        fields: more fields, ``name -> (type, default)`` (``...``: required), before the
            dataclass's (the LM task's ``arch``, choosing the model).
        doc: the table's docstring.
    """
    hints = typing.get_type_hints(config, include_extras=True)
    definitions: dict[str, Any] = dict(fields or {})
    for field in dataclasses.fields(config):
        if field.name not in exclude:
            definitions[field.name] = _field(hints[field.name], field)
    doc = doc or f"``[model]``: the fields of :class:`{config.__module__}.{config.__name__}`" + (
        f" but {', '.join(sorted(exclude))} (filled in from the data)." if exclude else "."
    )
    return create_model(name, __base__=Table, __doc__=doc, **definitions)


def build_config(config: type[C], table: Table, **filled: Any) -> C:
    """Dataclass ``config`` of a table made by :func:`config_table` (its fields that ``config``
    has), plus ``filled`` (what the task takes from the data); ``config``'s own checks run."""
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    return config(**{k: getattr(table, k) for k in type(table).model_fields if k in names}, **filled)
