"""Exported tied models (``pip install tying[export]`` for ONNX): the tie spec travels with the
artefact, and the tied matrix is stored once.

* ``torch.export``: :func:`export` records the spec in the ``ExportedProgram``
  (``graph_module.meta["tying"]``), :func:`save` / :func:`load` carry it in the ``.pt2`` archive
  (an extra file), and :func:`module` gives ``ep.module()`` with the ties declared (as plain ties
  between the exported state keys: a transposed tie's target key holds its source's Parameter,
  and the graph transposes it).
* ONNX: :func:`to_onnx` exports with torch's dynamo exporter, then stores each tied matrix as one
  initializer (the exporter writes the head's constant-folded transpose as a second one: it is
  replaced by a ``Transpose`` node reading the first) and writes the spec into the model's
  ``metadata_props`` (key ``"tying"``). :func:`onnx_duplicates` finds initializers stored twice
  (equal, or one the transpose of the other) in any ``.onnx`` file: ``tying inspect model.onnx``.

onnx and onnxruntime are imported only by the ONNX functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tying._paths import unwrap
from tying.core import tie
from tying.spec import TieSpec, get_spec, state_key_pairs

__all__ = ["export", "spec_of", "save", "load", "module", "to_onnx", "onnx_duplicates", "onnx_spec", "DuplicateInitializer"]

META = "tying"
_EXTRA = "tying.json"


def export(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None, **options: Any) -> torch.export.ExportedProgram:
    """``torch.export.export(model, args, kwargs, **options)`` with ``model``'s tie spec recorded in the program."""
    spec = get_spec(unwrap(model))
    ep = torch.export.export(unwrap(model), args, kwargs, **options)
    ep.graph_module.meta[META] = spec.to_json()
    return ep


def spec_of(ep: torch.export.ExportedProgram) -> TieSpec:
    """The tie spec :func:`export` recorded in ``ep`` (empty if none)."""
    text = ep.graph_module.meta.get(META)
    return TieSpec.from_json(text) if text else TieSpec()


def save(ep: torch.export.ExportedProgram, path: str | os.PathLike[str]) -> None:
    """``torch.export.save`` with the tie spec in the archive (extra file ``tying.json``)."""
    torch.export.save(ep, str(path), extra_files={_EXTRA: spec_of(ep).to_json()})


def load(path: str | os.PathLike[str]) -> torch.export.ExportedProgram:
    """``torch.export.load`` that restores the tie spec :func:`save` stored (:func:`spec_of` reads it)."""
    extra = {_EXTRA: ""}
    ep = torch.export.load(str(path), extra_files=extra)
    if extra[_EXTRA]:
        ep.graph_module.meta[META] = extra[_EXTRA]
    return ep


def module(ep: torch.export.ExportedProgram) -> nn.Module:
    """``ep.module()`` with the recorded ties declared between its state keys, so
    :func:`tying.verify` / :func:`tying.save` treat it as the tied model it came from."""
    out = ep.module()
    spec = spec_of(ep)
    for t in spec.ties:
        for src, tgt in state_key_pairs(spec, t):
            tie(out, src, tgt)
    return out


# --------------------------------------------------------------------------- ONNX


@dataclass(frozen=True)
class DuplicateInitializer:
    """An ONNX initializer whose values another initializer already holds (``how``: ``"equal"``
    or ``"transpose"``); ``nbytes`` is what storing it costs."""

    name: str
    kept: str
    how: str
    nbytes: int

    def __str__(self) -> str:
        what = "a copy" if self.how == "equal" else "the transpose"
        return f"{self.name} is {what} of {self.kept} ({self.nbytes:,} bytes stored twice)"


def _digest(a: Any) -> tuple[str, tuple[int, ...], str]:
    import numpy as np

    return (a.dtype.str, tuple(a.shape), hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest())


def _duplicates(graph: Any) -> list[DuplicateInitializer]:
    from onnx import numpy_helper

    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    first: dict[tuple[str, tuple[int, ...], str], str] = {}
    for name, a in arrays.items():
        first.setdefault(_digest(a), name)
    order = {name: i for i, name in enumerate(arrays)}
    out = []
    for name, a in arrays.items():
        if first[_digest(a)] != name:
            out.append(DuplicateInitializer(name, first[_digest(a)], "equal", a.nbytes))
        elif a.ndim == 2 and a.shape[0] * a.shape[1] > 1:
            kept = first.get(_digest(a.T))
            if kept is not None and order[kept] < order[name]:
                out.append(DuplicateInitializer(name, kept, "transpose", a.nbytes))
    return out


def onnx_duplicates(path: str | os.PathLike[str]) -> list[DuplicateInitializer]:
    """The initializers of the ONNX file ``path`` that repeat another one's values (a tied
    matrix written twice), each against the first initializer holding them."""
    import onnx

    return _duplicates(onnx.load(str(path)).graph)


def onnx_spec(path: str | os.PathLike[str]) -> TieSpec | None:
    """The tie spec :func:`to_onnx` wrote into the file's ``metadata_props``, else ``None``."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return TieSpec.from_json(props[META]) if META in props else None


def _store_once(proto: Any) -> list[DuplicateInitializer]:
    """Drop each duplicated initializer: its readers read the kept one (through a ``Transpose``
    node for a transposed copy)."""
    import onnx

    graph = proto.graph
    dups = _duplicates(graph)
    dropped = {d.name: d for d in dups}
    keep = [i for i in graph.initializer if i.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    for d in reversed(dups):
        if d.how == "transpose":
            graph.node.insert(0, onnx.helper.make_node("Transpose", [d.kept], [d.name], perm=[1, 0], name=f"tying_transpose_{d.name}"))
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in dropped and dropped[name].how == "equal":
                node.input[i] = dropped[name].kept
    return dups


def to_onnx(model: nn.Module, args: tuple[Any, ...], path: str | os.PathLike[str], **options: Any) -> list[DuplicateInitializer]:
    """Export ``model`` to the ONNX file ``path`` (``torch.onnx.export(..., dynamo=True, **options)``)
    with each tied matrix stored once and the tie spec in ``metadata_props["tying"]``; returns the
    duplicated initializers it removed."""
    import onnx

    model = unwrap(model)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        program = torch.onnx.export(model, args, dynamo=True, **options)
    assert program is not None  # dynamo=True always returns the program
    proto = program.model_proto
    removed = _store_once(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META, get_spec(model).to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(Path(path)))
    return removed
