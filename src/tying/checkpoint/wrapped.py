"""Tensor subclasses that wrap plain tensors (torchao's quantized ``Int8Tensor`` and the like) in
a safetensors file: each is stored as its inner tensors (``<key>:<inner name>``, e.g.
``head.weight:qdata`` and ``head.weight:scale``) and described in the header's ``"wrapped"``
entry (class, inner names, the flattening context as JSON, shape), so the file holds the
quantized bytes and no pickle. :func:`tying.quant.load` rebuilds them; FSDP2's ``DTensor`` shards
are not written this way (:func:`tying.distributed.save` gathers them)."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tying.errors import CheckpointError


def is_sharded(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``DTensor`` (a shard of a tensor spread over ranks)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__}")


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"dtype"}:
            return getattr(torch, value["dtype"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


def flatten(state: dict[str, torch.Tensor], path: str) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """``state`` with each wrapper subclass replaced by its inner tensors, and the header entry
    describing them; one object under several keys (a tie) is described once, under its first key."""
    out: dict[str, torch.Tensor] = {}
    wrapped: dict[str, dict[str, Any]] = {}
    for key, t in state.items():
        if not is_traceable_wrapper_subclass(t):
            out[key] = t
            continue
        inner, context = t.__tensor_flatten__()  # type: ignore[attr-defined]
        cls = type(t)
        try:
            ctx = _jsonable(context, "context")
        except TypeError as exc:
            raise CheckpointError(
                f"refusing to write {path!r}: {key!r} is a {cls.__name__} whose flattening {exc}, which a safetensors header "
                "cannot hold; save its state_dict with torch.save instead"
            ) from None
        names = [n for n in inner if getattr(t, n) is not None]
        wrapped[key] = {"class": f"{cls.__module__}.{cls.__qualname__}", "inner": names, "context": ctx, "shape": list(t.shape)}
        out.update((f"{key}:{n}", getattr(t, n)) for n in names)
    return out, wrapped


def check_entry(key: str, entry: object, stored: set[str]) -> None:
    """Raise ``ValueError`` unless ``entry`` is a well-formed ``"wrapped"`` header entry for ``key``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) or not isinstance(entry.get("inner"), list):
        raise ValueError(f"wrapped entry {key!r} needs 'class' and 'inner'")
    missing = [n for n in entry["inner"] if f"{key}:{n}" not in stored]
    if missing:
        raise ValueError(f"wrapped entry {key!r}: inner tensors {missing} are not in the file")


def rebuild(key: str, entry: dict[str, Any], get: Any) -> torch.Tensor:
    """The tensor subclass of header entry ``entry``; ``get(name)`` reads a stored tensor."""
    module, _, name = entry["class"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise CheckpointError(f"{key!r} is a {entry['class']}, which cannot be imported here (install the package that defines it)") from None
    inner = {n: get(f"{key}:{n}") for n in entry["inner"]}
    shape = torch.Size(entry["shape"])
    return cls.__tensor_unflatten__(inner, _from_json(entry["context"]), shape, torch.empty(shape, device="meta").stride())
