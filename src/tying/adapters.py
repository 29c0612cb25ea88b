"""Adapter layers wrapped around tie members (peft's LoRA layers, recognised by their interface:
``base_layer``, ``active_adapters``, ``get_delta_weight``): whether the members of a tie still
compute one weight. Needs torch only; peft itself is never imported here."""

from __future__ import annotations

import torch
from torch import nn

from tying.spec import Tie

_BASE = ".base_layer"


def adapter_layer(model: nn.Module, path: str) -> nn.Module | None:
    """The adapter layer whose ``base_layer`` holds ``path`` (``lm_head.base_layer.weight`` ->
    ``lm_head``), or ``None``."""
    owner = path.rpartition(".")[0]
    if not owner.endswith(_BASE) and owner != _BASE[1:]:
        return None
    try:
        layer = model.get_submodule(owner[: -len(_BASE)] if owner.endswith(_BASE) else "")
    except AttributeError:
        return None
    return layer if hasattr(layer, "get_delta_weight") and hasattr(layer, "active_adapters") else None


def adapter_delta(layer: nn.Module) -> torch.Tensor | None:
    """The sum of the active, unmerged adapters' weight updates of ``layer`` (``None``: none)."""
    if getattr(layer, "disable_adapters", False):
        return None
    deltas = []
    for name in layer.active_adapters:  # type: ignore[union-attr]
        try:
            deltas.append(layer.get_delta_weight(name))  # type: ignore[operator]
        except (KeyError, AttributeError):
            continue  # the adapter is not on this layer
    return torch.stack(deltas).sum(0) if deltas else None


def adapters_break(model: nn.Module, t: Tie) -> str | None:
    """Why adapter layers on the members of ``t`` make them compute different weights, else ``None``."""
    layers = {p: adapter_layer(model, p) for p in (t.source, t.target)}
    if all(layer is None for layer in layers.values()):
        return None
    merged = [p for p, layer in layers.items() if layer is not None and getattr(layer, "merged_adapters", None)]
    if merged:
        return (
            f"an adapter of {', '.join(map(repr, merged))} is merged into the shared matrix, which every member reads; "
            "unmerge it (peft's unmerge_adapter) and merge with tying.peft.merge_and_unload, which adds a tie group's update once"
        )
    with torch.no_grad():
        deltas = {p: (adapter_delta(layer) if layer is not None else None) for p, layer in layers.items()}
        src, tgt = deltas[t.source], deltas[t.target]
        if src is not None and t.transform is not None:
            src = t.make_transform()(src)
        same = (src is None and tgt is None) or (
            src is not None and tgt is not None and src.shape == tgt.shape and torch.equal(src, tgt)
        ) or (src is None and tgt is not None and not tgt.any()) or (tgt is None and src is not None and not src.any())
    if same:
        return None
    return (
        f"the adapters on its members differ ({', '.join(f'{p!r}: {_describe(d)}' for p, d in deltas.items())}), so they compute "
        "different weights, and peft's merge_and_unload would add each member's update to the one shared matrix; "
        "put one LoRA on the whole group with tying.peft.add_lora(model, source), or tying.untie the target first"
    )


def _describe(delta: torch.Tensor | None) -> str:
    return "no adapter" if delta is None else f"update of norm {delta.norm():.3g}"


def adapter_sharing(model: nn.Module, ties: list[Tie], paths: list[str]) -> bool:
    """Whether ``paths`` (one group of shared tensors) all lie inside the adapter layers of the
    members of one tie group: peft's ``ensure_weight_tying`` shares one update between them."""
    for source in {t.source for t in ties}:
        members = [source, *(t.target for t in ties if t.source == source)]
        prefixes = [p.rpartition(".")[0].removesuffix(_BASE) + "." for p in members if adapter_layer(model, p) is not None]
        if prefixes and all(any(path.startswith(pre) for pre in prefixes) for path in paths):
            return True
    return False
