"""What a training run gives back (:class:`TrainResult`), and how it stops early (:class:`Interrupted`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainResult", "Interrupted"]


class Interrupted(Exception):
    """Training stopped by SIGINT (Ctrl-C) after saving a resumable point; the message says where."""

    #: How a command stopped this way exits (128 + SIGINT), and how `tying compare` recognises such a run.
    exit_status = 130


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        history: per-epoch metrics (``epoch``, ``lr``, ``train_loss``, ``valid_<metric>`` for
            each metric, ``train_<unit>``, ``<unit>_per_s``, ``train_s``, ``wall_s`` = training +
            validation, ``peak_rss_mib`` = the process's peak resident memory so far, plus the
            task's :meth:`~Task.train_metrics` as ``train_<name>``).
        unit: what throughput counts (``"tokens"``).
        best_epoch: the epoch with the best validation value of the task's first metric.
        valid: that epoch's validation metrics; test: the test metrics of its model (None
            without test data); test_epoch: the epoch of the model tested (``best_epoch``, but
            the last under FSDP, which does not reload checkpoints).
        test_last: the test metrics of the last epoch's model (what papers that test once after
            training report; ``test`` itself when the last epoch is the one tested).
    """

    unit: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] | None = None
    test_epoch: int | None = None
    test_last: dict[str, float] | None = None

    @property
    def wall_s(self) -> float:
        """Seconds spent training and validating in all epochs (checkpoint writing excluded)."""
        return sum(m["wall_s"] for m in self.history)

    @property
    def throughput(self) -> float:
        """Training items (``unit``) per second over all epochs (evaluation excluded)."""
        train_s = sum(m["train_s"] for m in self.history)
        return sum(m[f"train_{self.unit}"] for m in self.history) / train_s if train_s else math.nan

    @property
    def peak_rss_mib(self) -> float | None:
        """The largest of the epochs' peak resident memory in MiB (each that of the process that
        trained the epoch), or None where it was not measured."""
        peaks = [m.get("peak_rss_mib") for m in self.history]
        return None if not peaks or None in peaks else max(p for p in peaks if p is not None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, history included."""
        return {
            "unit": self.unit,
            "best_epoch": self.best_epoch,
            "valid": self.valid,
            "test": self.test,
            "test_epoch": self.test_epoch,
            "test_last": self.test_last,
            "wall_s": self.wall_s,
            f"{self.unit}_per_s": self.throughput,
            **({"peak_rss_mib": self.peak_rss_mib} if self.peak_rss_mib is not None else {}),
            "history": self.history,
        }
