"""Exceptions raised by :mod:`tying`. Every message names the paths, shapes or file at fault
and the fix."""

from __future__ import annotations


class TieError(ValueError):
    """A tie request the model cannot honour (unknown path, shape/dtype/device mismatch, a
    target already tied elsewhere, a buffer, a path inside a parametrization, ...)."""


class TieVerificationError(TieError):
    """:func:`tying.verify` found declared ties that are broken or sharing nobody declared."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose tensors or tie spec contradict the model.
    Raised before anything is written into the model."""


class RecipeError(ValueError):
    """A recipe file, override or setting that cannot be used; the message names the file and key.
    Raised by the recipe reader (:mod:`tying.recipes`), the training engine and tasks alike."""
