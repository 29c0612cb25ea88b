"""LoRA on a tie group (``pip install tying[peft]`` to combine it with peft).

peft puts one LoRA layer on each module it targets. On a tie group — GPT-2's ``wte`` and
``lm_head`` share one matrix — that gives two independent low-rank updates of one matrix: the
two sites compute different weights while the tie claims they are one, and ``merge_and_unload``
adds *both* updates (or, with peft's ``ensure_weight_tying``, the same update twice) into the
one shared matrix, so the merged model no longer computes what the adapter model did.

* :func:`add_lora` puts **one** LoRA update on a tie group: a parametrization of the group's
  source (:class:`tying.transforms.LowRankUpdate`, ``W + alpha/r * B A``) that every member reads,
  so the embedding lookup and the output layer see the same update, whatever code reads the
  weight (``F.embedding(x, self.encoder.weight)`` included). The spec records it (kind
  ``"lora"``, rank and alpha): :func:`tying.save` writes the base once plus ``A`` and ``B``,
  :func:`tying.load` / :func:`tying.retie` re-create it.
* :func:`merge` folds it into the shared matrix once: the tie is kept, the base stored once, and
  the logits equal the adapter model's within float rounding.
* :func:`merge_and_unload` merges a peft model: peft's own adapters as peft does, a tie group's
  adapters once (when every member carries the same update, as with ``ensure_weight_tying``), and
  refuses a tie group whose members carry different updates, naming the remedy.
  :func:`tying.verify` reports such a group before any merge.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from tying._paths import unwrap
from tying.adapters import adapter_delta, adapter_layer, adapters_break
from tying.core import parametrize_group, retie
from tying.errors import TieError
from tying.graph import plist_at, slot
from tying.spec import get_spec, own_spec

__all__ = ["add_lora", "merge", "merge_and_unload", "lora_parameters"]


def add_lora(model: nn.Module, path: str, *, rank: int = 8, alpha: float = 16.0, freeze_base: bool = True) -> None:
    """Put one LoRA update (rank ``rank``, scale ``alpha / rank``; it starts at zero) on the tie
    group of ``path``: every member reads ``W + alpha/rank * B A`` from one ``A`` and one ``B``.
    ``freeze_base`` stops gradients to the shared ``W`` (LoRA trains ``A`` and ``B`` only).

    Raises:
        TieError: ``path`` is in no tie group, its ties are broken, or its source is parametrized
            already (e.g. by :func:`tying.weight_norm`, or by LoRA with another rank).
        ValueError: ``rank`` < 1.
    """
    if rank < 1:
        raise ValueError(f"add_lora(rank={rank}): the rank must be at least 1")
    parametrize_group(
        model, path, {"kind": "lora", "rank": rank, "alpha": float(alpha)}, "put LoRA on",
        "tying.peft.add_lora puts one update on a whole tie group (for an untied module use peft)",
    )
    if freeze_base:
        spec = get_spec(unwrap(model))
        for source in _lora_sources(spec.parametrizations):
            plist = plist_at(unwrap(model), source)
            assert plist is not None
            plist.original.requires_grad_(False)


def _lora_sources(parametrizations: dict[str, dict[str, object]]) -> list[str]:
    return [s for s, p in parametrizations.items() if p["kind"] == "lora"]


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``A`` and ``B`` of every tie group's LoRA (for the optimizer), each once."""
    model = unwrap(model)
    out: list[nn.Parameter] = []
    for source in _lora_sources(get_spec(model).parametrizations):
        plist = plist_at(model, source)
        assert plist is not None
        out += [plist[0].lora_A, plist[0].lora_B]  # type: ignore[list-item]
    return out


def merge(model: nn.Module) -> None:
    """Fold every tie group's LoRA (:func:`add_lora`) into its shared matrix, once: afterwards each
    member holds that one plain Parameter again (trainable), the spec keeps the ties and drops the LoRA."""
    model = unwrap(model)
    spec = get_spec(model)
    for source in _lora_sources(spec.parametrizations):
        plist = plist_at(model, source)
        assert plist is not None
        with torch.no_grad():
            merged = getattr(*slot(model, source)).detach().clone()
        base = plist.original
        for path in (source, *(t.target for t in spec.targets_of(source))):
            owner, name = slot(model, path)
            if parametrize.is_parametrized(owner, name):
                parametrize.remove_parametrizations(owner, name, leave_parametrized=False)
        with torch.no_grad():
            base.copy_(merged)
        base.requires_grad_(True)
        _drop_parametrization(model, source)
    retie(model)


def _drop_parametrization(model: nn.Module, source: str) -> None:
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        own = own_spec(module) if "_tying_spec" in module.__dict__ else None
        if own is not None and source.startswith(prefix) and source[len(prefix):] in own.parametrizations:
            del own.parametrizations[source[len(prefix):]]
            return


def merge_and_unload(model: Any) -> nn.Module:
    """Merge a peft model (``PeftModel``) into its base model, tie-aware, and return the base model.

    A tie group whose members carry peft adapters is merged once: the group's update is added to
    the shared matrix one time (peft's own ``merge_and_unload`` adds it once per member). Every
    other adapter is merged by peft. :func:`add_lora` updates are folded in by :func:`merge`.

    Raises:
        TieError: a tie group's members carry different updates (independent LoRA on ``wte`` and
            ``lm_head``): no single matrix computes both; nothing is changed. The message names the
            remedy: :func:`add_lora` on the group, or untie the target first.
    """
    spec = get_spec(model)
    inner = unwrap(model)
    problems = [f"{t.describe()}: {why}" for t in spec.ties if (why := adapters_break(inner, t))]
    if problems:
        raise TieError("cannot merge the adapters into the tied model; nothing was changed:\n  - " + "\n  - ".join(problems))
    for source, ties in spec.groups().items():
        layers = {p: adapter_layer(inner, p) for p in (source, *(t.target for t in ties))}
        if all(layer is None for layer in layers.values()):
            continue
        delta = next((d for layer in layers.values() if layer is not None and (d := adapter_delta(layer)) is not None), None)
        for path, layer in layers.items():
            if layer is not None:
                _unwrap_layer(inner, path, layer)
        if delta is not None:
            with torch.no_grad():
                inner.get_parameter(source.replace(".base_layer.", ".")).add_(delta)
    base = model.merge_and_unload() if hasattr(model, "merge_and_unload") else inner
    merge(base)
    retie(base)
    return base


def _unwrap_layer(model: nn.Module, path: str, layer: nn.Module) -> None:
    """Put ``layer``'s base layer back in its place (its adapters dropped, nothing merged)."""
    layer_path = path.rpartition(".")[0].removesuffix(".base_layer")
    parent_path, _, name = layer_path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, layer.get_base_layer())  # type: ignore[operator]
