"""Bounds on the numeric fields of configuration dataclasses, declared once on the field.

A field written ``dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1`` carries its bounds as
:data:`typing.Annotated` metadata: the dataclass checks them in ``__post_init__`` with
:func:`check_ranges` (so a model refuses a bad config in Python), and a recipe table derived from
the dataclass (:func:`tying.training.config_table`) turns them into the same bounds of its
pydantic fields. Plain Python: the library core needs no validation package.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Any

__all__ = ["Range", "ranges", "check_ranges"]


def _number(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Range:
    """Inclusive (``ge``, ``le``) or strict (``gt``, ``lt``) bounds of a number; None passes (an
    optional field left out)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def bounds(self) -> dict[str, float]:
        """The bounds set, by name (``{"ge": 0, "lt": 1}``): pydantic's ``Field`` arguments."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def describe(self) -> str:
        """``"in [0, 1)"``, ``">= 1"``, ``"> 0"``: what a value must be."""
        lower = f"[{_number(self.ge)}" if self.ge is not None else f"({_number(self.gt)}" if self.gt is not None else None
        upper = f"{_number(self.le)}]" if self.le is not None else f"{_number(self.lt)})" if self.lt is not None else None
        if lower and upper:
            return f"in {lower}, {upper}"
        ops = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        return " and ".join(f"{op} {_number(v)}" for op, v in ops if v is not None)

    def holds(self, value: Any) -> bool:
        if value is None:
            return True
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )


_RANGES: dict[type, dict[str, Range]] = {}


def ranges(cls: type) -> dict[str, Range]:
    """Field name -> its :class:`Range`, for the fields of dataclass ``cls`` annotated with one."""
    if cls not in _RANGES:
        hints = typing.get_type_hints(cls, include_extras=True)
        found = {f.name: [m for m in typing.get_args(hints[f.name])[1:] if isinstance(m, Range)] for f in dataclasses.fields(cls)}
        _RANGES[cls] = {name: bounds[0] for name, bounds in found.items() if typing.get_origin(hints[name]) is Annotated and bounds}
    return _RANGES[cls]


def check_ranges(config: Any) -> None:
    """Raise ValueError naming the first field of dataclass instance ``config`` outside its
    :class:`Range` (``"dropout must be in [0, 1), got 1.5"``)."""
    for name, bound in ranges(type(config)).items():
        value = getattr(config, name)
        if not bound.holds(value):
            raise ValueError(f"{name} must be {bound.describe()}, got {value!r}")
