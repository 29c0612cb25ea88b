"""The checkpoint folder of a training run (see :mod:`tying.training.trainer`): model files written
tie-aware, the training state last as the commit point, and the checks before a resume."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist
from pydantic import BaseModel
from torch import nn

from tying.checkpoint import load, save
from tying.distributed import save as save_sharded
from tying.errors import CheckpointError
from tying.training.settings import changed_settings
from tying.training.state import SavedTrainState, TrainState, read_train_state, save_train_state

__all__ = ["STATE_FILE", "BEST_FILE", "Checkpoints", "settings_of"]

STATE_FILE = "train_state.safetensors"
BEST_FILE = "best.safetensors"


def settings_of(tables: Mapping[str, BaseModel]) -> dict[str, dict[str, Any]]:
    """The recipe tables as JSON, as the training state records them."""
    return {name: table.model_dump(mode="json") for name, table in tables.items()}


class Checkpoints:
    """Writes and reads the checkpoints of one run in ``folder``. Rank 0 writes; under FSDP
    (``sharded``) every rank takes part in gathering the model, and nothing is reloaded."""

    def __init__(self, folder: Path, *, rank: int = 0, world_size: int = 1, sharded: bool = False) -> None:
        self.folder, self.rank, self.world_size, self.sharded = folder, rank, world_size, sharded

    def save(
        self, model: nn.Module, model_file: str, state: TrainState, *, best: bool, metadata: dict[str, str],
        optimizer: dict[str, Any], settings: dict[str, Any],
    ) -> None:  # fmt: skip
        """The model as ``model_file`` (and as :data:`BEST_FILE` when ``best``), then the training
        state naming it; the previous model file goes once the state no longer names it."""
        previous = state.model_file
        state.model_file = model_file
        if self.rank == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
        if self.rank == 0 or self.sharded:
            write = save_sharded if self.sharded else save
            write(model, self.folder / model_file, metadata=metadata)
            if best:
                # Not covered by the commit point, but a resume after a crash here recomputes
                # this epoch bit for bit and rewrites the same file.
                write(model, self.folder / BEST_FILE, metadata=metadata)
        if self.rank == 0:
            save_train_state(self.folder / STATE_FILE, state, optimizer, settings)
            if previous and previous != model_file:
                (self.folder / previous).unlink(missing_ok=True)
        if self.world_size > 1:
            dist.barrier()

    def load(self, model: nn.Module, path: Path) -> None:
        if self.sharded:
            raise CheckpointError(
                f"cannot load {str(path)!r} into an FSDP-sharded model: runs under train.parallel='fsdp' are not resumable "
                "and keep the last epoch's model; use train.parallel='ddp' to resume or to test the best epoch's model"
            )
        load(model, path)

    def can_resume(self) -> bool:
        return (self.folder / STATE_FILE).is_file()

    def read(self, tables: Mapping[str, BaseModel]) -> SavedTrainState:
        """The saved training state, checked against the run's ``tables``: only the settings that
        :func:`~tying.training.settings.changed_settings` lets differ may."""
        saved = read_train_state(self.folder / STATE_FILE)
        if saved.state.model_file is None:
            raise CheckpointError(f"{str(self.folder / STATE_FILE)!r} names no model checkpoint")
        changed = changed_settings(saved.config, tables)
        if changed:
            raise CheckpointError(
                f"cannot resume from {str(self.folder)!r}: its run used different settings ({'; '.join(changed)}); "
                "only train.epochs may change on resume (and train.device, where it runs); use the old settings or a new run folder"
            )
        return saved
