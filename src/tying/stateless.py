"""Calling a tied model with substitute tensors (``torch.func.functional_call``), one tensor per tie group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tying._paths import logical_path, resolve, unwrap
from tying.errors import TieError
from tying.transforms import held_transform

__all__ = ["functional_call"]


def _group_value(model: nn.Module, name: str, value: torch.Tensor, keys: dict[str, nn.Parameter]) -> tuple[nn.Parameter, torch.Tensor]:
    """The Parameter object ``name`` reaches and the value it must hold for ``name`` to read ``value``."""
    if name in keys and logical_path(name, model) == name:
        return keys[name], value
    ref = resolve(model, logical_path(name, model) if name in keys else name)
    held = held_transform(ref.owner, ref.name) if ref.parametrized and name not in keys else None
    if ref.parametrized and name not in keys and held is None:
        raise TieError(f"{name!r} is computed by a parametrization tying did not install; name its original instead")
    # A transformed target's value is given in its own layout: the source holds its inverse.
    return ref.param, (held.right_inverse(value) if held is not None else value)


def functional_call(
    model: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    args: Any = (),
    kwargs: dict[str, Any] | None = None,
    *,
    strict: bool = False,
) -> Any:
    """``torch.func.functional_call`` for a tied model: name **one** member of each tie group
    (source or target, e.g. ``{"embed.weight": w}``) and every member reads ``w`` — a transposed
    target reads ``w.T``, and naming the transposed target gives the source its transpose. Other
    names (untied parameters, buffers) pass through as in torch.

    Raises:
        ValueError: two names of one tie group given different tensors (both named).
        TieError: an unknown name (with the closest names).
    """
    model = unwrap(model)
    named = list(model.named_parameters(remove_duplicate=False))
    keys = dict(named)
    chosen: dict[int, tuple[str, torch.Tensor]] = {}
    passthrough: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        if name not in keys and name not in dict(model.named_parameters()) and _is_buffer(model, name):
            passthrough[name] = value
            continue
        param, held = _group_value(model, name, value, keys)
        seen = chosen.get(id(param))
        if seen is not None and seen[1] is not held and not (seen[1].shape == held.shape and torch.equal(seen[1], held)):
            raise ValueError(f"{seen[0]!r} and {name!r} are one tie group but were given different tensors; name one of them")
        chosen[id(param)] = (name, held)
    for key, param in named:
        if id(param) in chosen:
            passthrough[key] = chosen[id(param)][1]
    return torch.func.functional_call(model, passthrough, args, kwargs, tie_weights=False, strict=strict)


def _is_buffer(model: nn.Module, name: str) -> bool:
    return name in dict(model.named_buffers(remove_duplicate=False))
