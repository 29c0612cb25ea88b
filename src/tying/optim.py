"""Optimizer parameter groups and parameter counts for tied models.

A tied model registers one ``nn.Parameter`` under several paths. Anything that walks those paths
by name — ``named_parameters(remove_duplicate=False)``, ``state_dict()``, a weight-decay split
by name — sees the shared tensor several times: an optimizer given it twice in one group steps it
twice (torch warns), given it in two groups raises ``ValueError: some parameters appear in more
than one parameter group``, and a count over ``state_dict`` counts it once per name. The helpers
here name each Parameter object once, under one canonical path, and decide per *object*.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from tying._paths import resolve, unwrap
from tying.accounting import summary
from tying.spec import get_spec, state_key_pairs

__all__ = ["unique_parameters", "count_parameters", "param_groups"]

#: Decides, from a Parameter's canonical path and the Parameter, whether it is exempt from weight decay.
NoDecayRule = Callable[[str, nn.Parameter], bool]


def unique_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every distinct Parameter object of ``model`` once, keyed by its canonical path, in
    ``named_parameters`` order.

    The canonical path of a tie group is its declared source (:func:`tying.tie`,
    :func:`tying.tie_transposed`: the path whose layout the Parameter has); for a group
    normalized by :func:`tying.weight_norm`, the source's ``g`` and ``v``
    (``<source module>.parametrizations.<name>.original0`` / ``original1``). A Parameter no
    declaration names keeps the first path ``model.named_parameters()`` gives it. So this is
    ``dict(model.named_parameters())`` with declared groups renamed to their source, whatever the
    module registration order: the names an optimizer's ``param_names``, a weight-decay rule or a
    log should use.
    """
    model = unwrap(model)
    named = dict(model.named_parameters())
    spec = get_spec(model)
    source_of: dict[int, str] = {}
    for t in spec.ties:
        if t.source in spec.parametrizations:  # computed from several originals: each is a Parameter of the group
            source_of.update((id(model.get_parameter(key)), key) for key, _ in state_key_pairs(spec, t))
        else:
            source_of[id(resolve(model, t.source).param)] = t.source
    return {source_of.get(id(p), key): p for key, p in named.items()}


def count_parameters(model: nn.Module, *, unique: bool = True) -> int:
    """Number of parameter scalars in ``model``.

    ``unique=True``: each number held in memory once — a shared Parameter once however many paths
    hold it, and distinct Parameters over overlapping memory (views, "fake ties") once, as
    :func:`tying.summary` counts. ``unique=False``: once per path, as a count over ``state_dict``
    or ``named_parameters(remove_duplicate=False)`` gives (what naive counts report for tied
    models). For a model without views ``count_parameters(model)`` equals
    ``sum(p.numel() for p in unique_parameters(model).values())``.
    """
    counts = summary(model)
    return counts.unique_parameters if unique else counts.total_parameters


def _no_decay_rule(no_decay: NoDecayRule | Iterable[str]) -> NoDecayRule:
    if callable(no_decay):
        return no_decay
    patterns = [no_decay] if isinstance(no_decay, str) else list(no_decay)
    return lambda path, _: any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def _is_gain_or_bias(path: str, param: nn.Parameter) -> bool:
    return param.dim() < 2


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    no_decay: NoDecayRule | Iterable[str] = _is_gain_or_bias,
) -> list[dict[str, Any]]:
    """Two torch optimizer parameter groups — decayed, then exempt — in which every trainable
    Parameter object appears exactly once::

        [{"params": [...], "param_names": [...], "weight_decay": weight_decay},
         {"params": [...], "param_names": [...], "weight_decay": 0.0}]

    Pass the list to any ``torch.optim`` optimizer (``AdamW(param_groups(model, 0.1), lr=...)``).

    **Rule.** Each Parameter of :func:`unique_parameters` with ``requires_grad`` is exempt iff
    ``no_decay(canonical_path, parameter)`` is true. The canonical path of a tie group is its
    declared source, so *a tie group decays iff its source path would*, whichever other paths
    share it: with ``no_decay=["embed.*"]`` and ``head.weight`` tied to ``embed.weight`` the
    shared matrix is exempt although ``head.weight`` matches no pattern (a per-name split would
    put it in both groups, and torch would raise ``ValueError``). Frozen parameters are left out.

    Args:
        weight_decay: the decayed group's ``weight_decay``.
        no_decay: a predicate ``(canonical_path, parameter) -> bool``, or ``fnmatch`` patterns
            matched against the canonical path (e.g. ``["*.bias", "*norm*", "embed.*"]``).
            Default: parameters with fewer than 2 dimensions (biases, normalisation gains).

    Groups keep ``named_parameters`` order and are both present even when one is empty, so
    group 0 is always the decayed one. ``param_names`` is torch's key for named groups
    (``optimizer.state_dict()`` records it).
    """
    exempt = _no_decay_rule(no_decay)
    groups: list[dict[str, Any]] = [
        {"params": [], "param_names": [], "weight_decay": weight_decay},
        {"params": [], "param_names": [], "weight_decay": 0.0},
    ]
    for path, p in unique_parameters(model).items():
        if p.requires_grad:
            group = groups[1 if exempt(path, p) else 0]
            group["params"].append(p)
            group["param_names"].append(path)
    return groups
