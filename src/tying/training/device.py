"""Where training runs: ``train.device`` resolved to a torch device (a clear error when it is not
there), and batches moved to it."""

from __future__ import annotations

import os
from typing import Any

import torch

from tying.errors import RecipeError

__all__ = ["resolve_device", "to_device"]


def resolve_device(name: str, world_size: int = 1) -> torch.device:
    """The device of ``train.device = name`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``). Under data
    parallelism a bare ``"cuda"`` is each process's own GPU (``LOCAL_RANK``).

    Raises:
        RecipeError: CUDA asked for but absent, or a device index the machine does not have.
    """
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise RecipeError(
            f"train.device = {name!r}: no CUDA device is available here (torch.cuda.is_available() is False); "
            'set train.device = "cpu"'
        )
    if device.index is None and world_size > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise RecipeError(f"train.device = {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with its tensors on ``device``: a tensor, an object with a ``to(device)`` method (a
    batch dataclass), or tuples (named ones too), lists and dicts of these; anything else as is.
    Tensors already there are returned as they are (no copy)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        items = [to_device(x, device) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, list):
        return [to_device(x, device) for x in obj]
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    to = getattr(obj, "to", None)
    return to(device) if callable(to) else obj
