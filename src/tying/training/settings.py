"""Whether a stored run was trained with the settings asked for now: one comparison for resuming
a run (:class:`tying.training.Trainer`) and for reusing a finished one (``tying compare``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["changed_settings"]

#: Settings a stored run may differ in: more epochs extend a run, fewer re-score it; the device
#: says where it runs, not what it computes.
_MAY_CHANGE = {("train", "epochs"), ("train", "device")}


#: What a key a stored run lacks meant when the run was recorded, where today's default differs:
#: tying 0.1's ``[train]`` defaults (the LSTM LM's), before they became neutral in 0.2. Other
#: missing keys were added after the run, with the default that keeps the earlier behaviour.
_RECORDED_DEFAULTS = {"train": {"optimizer": "sgd", "lr": 20.0, "clip": 0.25, "lr_schedule": "plateau"}}


def _shown(value: Any) -> str:
    """A setting as a recipe writes it (``true``, ``0.01``, ``"ptb"``)."""
    return json.dumps(value)


def changed_settings(stored: Mapping[str, Mapping[str, Any]], requested: Mapping[str, BaseModel]) -> list[str]:
    """The settings of ``requested`` (a recipe's validated tables) that differ from ``stored``
    (the same tables as JSON, from a run's training state or ``metrics.json``), each as
    ``"train.lr: stored 0.01, requested 0.001"``; empty when the run can be reused.

    ``train.epochs`` and ``train.device`` are not compared. A key the stored run lacks counts as
    unchanged while the requested value is what the key meant when the run was recorded: its
    default then (:data:`_RECORDED_DEFAULTS`), else today's default (a key is added with the
    default that keeps the earlier behaviour)."""
    changed = []
    for name, table in requested.items():
        fields = type(table).model_fields
        theirs = stored.get(name, {})
        for key, value in table.model_dump(mode="json").items():
            if (name, key) in _MAY_CHANGE:
                continue
            if key not in theirs:
                default = _RECORDED_DEFAULTS.get(name, {}).get(key, fields[key].get_default(call_default_factory=True))
                if value != json.loads(json.dumps(default)):  # as JSON: a tuple default dumps as a list
                    changed.append(f"{name}.{key}: stored (not set), requested {_shown(value)}")
            elif theirs[key] != value:
                changed.append(f"{name}.{key}: stored {_shown(theirs[key])}, requested {_shown(value)}")
    return changed
