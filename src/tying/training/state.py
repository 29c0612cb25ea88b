"""Training-state checkpoints: everything besides the model that a run needs to continue
exactly where it stopped.

The model goes to its own file through :func:`tying.save` (tie-aware). This file holds the rest
as a safetensors file, never a pickle: the torch RNG states and the optimizer's state tensors
as tensors, the carried state of an interrupted epoch (:func:`flatten_carry`) as tensors, and
the epoch counter, learning rate, best validation metric, metrics history, the position and
partial sums of an interrupted epoch, config and the optimizer's non-tensor state as JSON under
the header key
``"tying.train_state"``. It is written with :func:`tying._io.atomic_save_file` *after* the
model file it names, so it is the commit point: a crash leaves the previous complete pair.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from tying._io import atomic_save_file
from tying.errors import CheckpointError

__all__ = ["TrainState", "SavedTrainState", "save_train_state", "read_train_state", "flatten_carry", "unflatten_carry"]

_KEY = "tying.train_state"
_VERSION = 2


@dataclass
class TrainState:
    """Progress of a training run.

    Attributes:
        epoch: epochs completed.
        lr: learning rate of the next epoch.
        best_value, best_epoch: the best value so far of the task's first metric on the
            validation data, and its epoch.
        history: one JSON-serialisable metrics dict per completed epoch.
        model_file: name (in the same folder) of the model checkpoint written after ``epoch``
            (or at the interruption of the next one).
        step: batches of epoch ``epoch + 1`` already trained (an interrupted epoch; 0: none).
        partial: that epoch's running sums (``loss_sum``, ``count``, ``train_s``).
        carry: the task's carried state at the interruption (see :class:`tying.training.StepOutput`).
    """

    epoch: int = 0
    lr: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    model_file: str | None = None
    step: int = 0
    partial: dict[str, float] = field(default_factory=dict)
    carry: Any = field(default=None, repr=False)


def flatten_carry(carry: Any) -> tuple[list[torch.Tensor], Any]:
    """A carried state (None, a tensor, or nested tuples/lists of them) as its tensors in order and
    a JSON structure (``None``, ``"t"`` or a list of structures) to rebuild it."""
    if carry is None:
        return [], None
    if isinstance(carry, torch.Tensor):
        return [carry.detach()], "t"
    tensors, structure = [], []
    for item in carry:
        t, s = flatten_carry(item)
        tensors += t
        structure.append(s)
    return tensors, structure


def unflatten_carry(tensors: list[torch.Tensor], structure: Any) -> Any:
    """Inverse of :func:`flatten_carry` (tuples for sequences)."""
    it = iter(tensors)

    def build(s: Any) -> Any:
        if s is None:
            return None
        return next(it) if s == "t" else tuple(build(x) for x in s)

    return build(structure)


def save_train_state(
    path: str | os.PathLike[str], state: TrainState, optimizer: dict[str, Any], config: dict[str, Any]
) -> Path:
    """Write ``state``, an optimizer's ``state_dict()``, ``config`` and the current torch RNG
    states to ``path``."""
    tensors = {"rng.cpu": torch.get_rng_state()}
    carry, structure = flatten_carry(state.carry)
    tensors.update({f"carry.{i}": t.cpu().contiguous() for i, t in enumerate(carry)})
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    opt = optimizer
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    record = {
        "version": _VERSION,
        "state": {**{f.name: getattr(state, f.name) for f in fields(state) if f.name != "carry"}, "carry": structure},
        "config": config,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
    }
    return atomic_save_file(tensors, path, metadata={_KEY: json.dumps(record)})


@dataclass
class SavedTrainState:
    """The contents of a training-state file, not yet applied (see :meth:`restore`)."""

    state: TrainState
    config: dict[str, Any]
    optimizer_state: dict[str, Any]
    rng: dict[str, torch.Tensor]

    def restore(self, optimizer: torch.optim.Optimizer) -> TrainState:
        """Load the optimizer state into ``optimizer``, set the torch RNG states, return the progress."""
        optimizer.load_state_dict(self.optimizer_state)
        torch.set_rng_state(self.rng["rng.cpu"])
        cuda = [self.rng[f"rng.cuda.{i}"] for i in range(len(self.rng) - 1)]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        return self.state


def read_train_state(path: str | os.PathLike[str]) -> SavedTrainState:
    """Read a file of :func:`save_train_state` without changing anything."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except SafetensorError as exc:
        raise CheckpointError(f"cannot read training state {str(path)!r}: {exc}") from exc
    if _KEY not in meta:
        raise CheckpointError(f"{str(path)!r} is not a tying training-state file (no {_KEY!r} header entry)")
    try:
        record = json.loads(meta[_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{str(path)!r}: the {_KEY!r} header entry is not valid JSON: {exc}") from exc
    if record.get("version") != _VERSION:
        raise CheckpointError(f"{str(path)!r} has training-state format {record.get('version')!r}; this tying reads {_VERSION}")
    opt_state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = tensor
    for idx, entries in record["optimizer"]["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(entries)
    fields = dict(record["state"])
    carry = [tensors[f"carry.{i}"] for i in range(sum(k.startswith("carry.") for k in tensors))]
    fields["carry"] = unflatten_carry(carry, fields.get("carry"))
    return SavedTrainState(
        state=TrainState(**fields),
        config=record["config"],
        optimizer_state={"state": opt_state, "param_groups": record["optimizer"]["param_groups"]},
        rng={k: t for k, t in tensors.items() if k.startswith("rng.")},
    )
