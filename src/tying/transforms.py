r"""Transforms a tie may apply: what a target reads of its source.

A tie ``source -> target`` with ``transform=None`` makes the target *be* the source Parameter. A
transformed tie makes the target read ``f(source)`` through a parametrization whose ``original``
is the source Parameter itself, so the gradient of every use reaches one leaf. Today there is one
transform, ``"transpose"`` (:math:`W_t = W_s^\top`, tied autoencoders); the spec, discovery,
checkpoints and resizing look transforms up here by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm, weight_norm

from tying._paths import parametrization_list

__all__ = [
    "Transpose",
    "TRANSFORMS",
    "SOURCE_PARAMETRIZATIONS",
    "SourceParametrization",
    "apply_transform",
    "is_tying_parametrization",
    "source_parametrization",
]


class Transpose(nn.Module):
    r"""Parametrization ``W_target = W_source^T`` (dimensions 0 and 1 swapped).

    Why a parametrization rather than a module holding a reference to the source: it works on any
    existing module (``nn.Linear``, ``nn.ConvTranspose2d``, custom layers) without replacing it or
    changing its ``forward``; the transposed weight is a *view* recomputed on each access, so the
    gradient flows into the single source leaf; and the parametrization's ``original`` is the
    source Parameter itself, so the tie is visible to ``named_parameters``, optimizers,
    ``state_dict`` and :func:`tying.find_ties` as an ordinary shared Parameter.
    Swapping dims 0 and 1 covers tied autoencoders (``Linear(d, h)`` / ``Linear(h, d)``) and
    convolution / transposed-convolution pairs (``[out, in, k, k]`` vs ``[in, out, k, k]``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1)

    def right_inverse(self, x: torch.Tensor) -> torch.Tensor:
        # Assigning ``module.weight = w`` on a target writes ``w^T`` into the shared source.
        return x.transpose(0, 1)


#: Transform name -> the parametrization class that implements it.
TRANSFORMS: dict[str, type[nn.Module]] = {"transpose": Transpose}


@dataclass(frozen=True)
class SourceParametrization:
    """A parametrization tying can put on a tie group's source and re-create from the spec: every
    member of the group then reads it, computed from the source's originals (one ``g`` and one
    ``v`` for weight normalization)."""

    kind: str
    #: Names of the parametrization's originals (``original0``: ``g``, ``original1``: ``v``).
    originals: tuple[str, ...]
    #: ``apply(module, name, options)`` parametrizes ``module.<name>`` (keeping its value).
    apply: Callable[[nn.Module, str, dict[str, Any]], None]
    #: The options of a parametrization module of this kind (``{"dim": 0}``), else ``None``.
    options: Callable[[nn.Module], dict[str, Any] | None]


def _weight_norm(module: nn.Module, name: str, options: dict[str, Any]) -> None:
    weight_norm(module, name, dim=options["dim"])


#: Kind -> how to apply and recognise it. Weight normalization (Salimans & Kingma 2016):
#: :math:`W = g\,v / \lVert v \rVert` along every dimension but ``dim``.
SOURCE_PARAMETRIZATIONS: dict[str, SourceParametrization] = {
    "weight_norm": SourceParametrization(
        "weight_norm", ("original0", "original1"), _weight_norm, lambda p: {"dim": p.dim} if isinstance(p, _WeightNorm) else None
    ),
}


def source_parametrization(module: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """``(kind, options)`` when ``module`` (one parametrization) is of a known kind, else ``None``."""
    for kind, sp in SOURCE_PARAMETRIZATIONS.items():
        options = sp.options(module)
        if options is not None:
            return kind, options
    return None


def apply_transform(transform: str | None, tensor: torch.Tensor) -> torch.Tensor:
    """What a target with ``transform`` reads when its source holds ``tensor``."""
    return tensor if transform is None else TRANSFORMS[transform]()(tensor)


def is_tying_parametrization(module: nn.Module, name: str) -> str | None:
    """The transform name when ``module.<name>`` is computed by exactly one of tying's transform
    parametrizations (a transformed tie's target), else ``None``."""
    if not parametrize.is_parametrized(module, name):
        return None
    plist = parametrization_list(module, name)
    if len(plist) != 1:
        return None
    return next((n for n, cls in TRANSFORMS.items() if type(plist[0]) is cls), None)
