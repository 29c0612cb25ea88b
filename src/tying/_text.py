"""Counts in messages: ``1 run``, ``2 runs``, ``1,000 tensors``."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` (thousands separated) and ``noun``, or ``many`` (default ``noun + "s"``) unless
    the count is exactly 1."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"
