r"""Transforms a tie may apply: what a target reads of its source.

A tie ``source -> target`` with ``transform=None`` makes the target *be* the source Parameter. A
transformed tie makes the target read ``f(source)`` through a parametrization whose ``original``
is the source Parameter itself, so the gradient of every use reaches one leaf. Today there is one
transform, ``"transpose"`` (:math:`W_t = W_s^\top`, tied autoencoders); the spec, discovery,
checkpoints and resizing look transforms up here by name.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from tying._paths import parametrization_list

__all__ = ["Transpose", "TRANSFORMS", "apply_transform", "is_tying_parametrization"]


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
