"""Loading a checkpoint into a model, all or nothing: :func:`~tying.checkpoint.plan.plan_load`
decides without changing anything, then the plan is applied."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from tying._paths import unwrap
from tying.checkpoint.folder import as_one_file
from tying.checkpoint.plan import LoadPlan, plan_load
from tying.core import declare, retie
from tying.errors import CheckpointError
from tying.spec import Tie


@dataclass
class LoadResult:
    """What :func:`load` did."""

    #: Ties recorded in the file that the model lacked and now holds.
    applied_ties: list[Tie] = field(default_factory=list)
    #: Model keys the file lacked (kept their values; only with ``strict=False``).
    missing_keys: list[str] = field(default_factory=list)
    #: File tensors the model has no place for (ignored; only with ``strict=False``).
    unexpected_keys: list[str] = field(default_factory=list)
    #: Problems tolerated because ``strict=False``.
    warnings: list[str] = field(default_factory=list)


def load(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> LoadResult:
    """Fill ``model`` from a safetensors file and re-establish the ties the file records that the
    model lacks. All or nothing: every check runs before the first value is written.

    ``path`` is a file or a transformers ``save_pretrained`` folder (its ``model.safetensors``, or
    the shards its ``model.safetensors.index.json`` lists). Reads files from :func:`save`, ``safetensors.torch.save_model`` (``{dropped: kept}`` metadata)
    and plain state-dict files. A file that stores two entries as one tensor gives one tensor back:
    its declared ties (:func:`save`'s spec) and its aliases — from :func:`save`, whose aliases also
    cover sharing nobody declared (nanoGPT's ``wte.weight = lm_head.weight``), and from
    ``save_model``'s metadata — become ties of the model (declared in its spec and listed in
    ``LoadResult.applied_ties``). Refuses with :class:`CheckpointError`, naming keys, shapes and
    the file: a shape or dtype that differs from the model's (with a hint to
    :func:`tying.resize_vocab` when only a vocabulary-like size differs); a tie the file records
    that contradicts one the model declares or that the model cannot hold; two stored copies of
    what the model holds as one tensor that disagree (``load_state_dict`` would silently keep the
    last one), for declared ties and undeclared sharing alike; missing or unexpected keys.

    ``strict=False`` is the explicit opt-out: missing keys keep the model's values, unexpected
    keys are ignored, dtypes are converted, disagreeing copies resolve to the source's (or first
    path's) values, the model's own declarations win over the file's, and file aliases the model
    cannot hold load as separate copies; each is listed in ``LoadResult.warnings`` and warned.
    Shape mismatches always fail. Load into a model before sharding it with FSDP2; a sharded
    model is refused.
    """
    model = unwrap(model)
    with as_one_file(Path(path)) as file:
        plan = plan_load(model, file, strict=strict)
        if plan.problems:
            head = f"cannot load {str(path)!r} into {type(model).__name__}; nothing was changed:"
            raise CheckpointError("\n  - ".join([head, *plan.problems]))
        return _apply(model, plan)


def _apply(model: nn.Module, plan: LoadPlan) -> LoadResult:
    """First the missing ties, then the values; then each tolerated problem is warned."""
    declare(model, plan.to_apply)
    state = model.state_dict(keep_vars=True)
    with safe_open(str(plan.path), framework="pt", device="cpu") as f, torch.no_grad():
        for key, name in plan.copies.items():
            state[key].copy_(f.get_tensor(name))
    retie(model)
    for w in plan.tolerated:
        warnings.warn(f"{str(plan.path)!r}: {w}", stacklevel=3)  # the caller of tying.load
    return LoadResult(
        applied_ties=plan.to_apply,
        missing_keys=[k for k in state if k not in plan.copies and k not in plan.derived and plan.stored_name(k) is None],
        unexpected_keys=plan.unexpected,
        warnings=plan.tolerated,
    )
