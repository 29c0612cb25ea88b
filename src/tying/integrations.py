"""Hooks that integrations with other libraries (:mod:`tying.hf`) register with the core, so the
core never imports them.

An integration registers its hooks when it is imported; :func:`own_initialiser` first imports the
integration of each library the process has loaded (:data:`PROVIDERS`), so a transformers model
passed to :func:`tying.materialize` gets its own initialisation whether or not ``tying.hf`` was
imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from torch import nn

#: ``initialiser(model)``: the whole-model initialisation of a model the integration knows, else ``None``.
Initialiser = Callable[[nn.Module], Callable[[], object] | None]

#: Library module -> the tying module integrating it, imported once the library is loaded.
PROVIDERS: dict[str, str] = {"transformers": "tying.hf"}

_INITIALISERS: list[Initialiser] = []

#: ``reader(model)``: the ties a library declares for ``model`` as ``{target: source}`` (empty when
#: it knows none), whether or not they are declared to tying yet; with the call that declares them.
TieReader = Callable[[nn.Module], dict[str, str]]

_TIE_READERS: list[tuple[TieReader, str]] = []


def register_tie_reader(reader: TieReader, call: str) -> None:
    """Let :func:`library_ties` ask ``reader``; ``call`` is what the user runs to declare them."""
    if all(r is not reader for r, _ in _TIE_READERS):
        _TIE_READERS.append((reader, call))


def library_ties(model: nn.Module) -> tuple[dict[str, str], str]:
    """``({target: source}, call)`` of the first integration that knows ties of ``model``, else ``({}, "")``."""
    _load_providers()
    for reader, call in _TIE_READERS:
        found = reader(model)
        if found:
            return found, call
    return {}, ""


def register_initialiser(initialiser: Initialiser) -> None:
    """Let :func:`own_initialiser` ask ``initialiser`` (once, however often it is registered)."""
    if initialiser not in _INITIALISERS:
        _INITIALISERS.append(initialiser)


def _load_providers() -> None:
    for library, provider in PROVIDERS.items():
        if library in sys.modules and provider not in sys.modules:
            importlib.import_module(provider)


def own_initialiser(model: nn.Module) -> Callable[[], object] | None:
    """The whole-model initialisation an integration knows for ``model`` (transformers'
    ``initialize_weights``), or ``None``: :func:`tying.materialize` then resets each module."""
    _load_providers()
    for initialiser in _INITIALISERS:
        found = initialiser(model)
        if found is not None:
            return found
    return None
