"""Writing a checkpoint: each tie group stored once, the spec and the aliases in the header,
crash-safe (:func:`tying._io.atomic_write`)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tying._io import atomic_save_file
from tying._paths import unwrap
from tying._text import plural
from tying.checkpoint.reader import META_KEY, implied_aliases
from tying.checkpoint.wrapped import flatten, is_sharded
from tying.errors import CheckpointError
from tying.spec import TieSpec, get_spec, source_keys
from tying.verification import require_intact

_RESERVED = (META_KEY, "format")


def _alias_key(t: torch.Tensor) -> tuple[object, ...]:
    """Entries with equal keys are the same tensor view (tied), safe to store once; a wrapped
    (quantized) tensor is the same when its inner tensors are."""
    if is_traceable_wrapper_subclass(t) and not is_sharded(t):
        names = t.__tensor_flatten__()[0]  # type: ignore[attr-defined]
        return (type(t), tuple(_alias_key(getattr(t, n)) for n in names if getattr(t, n) is not None))
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def sharded_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """Keys of FSDP2's DTensor shards: no file holds them as they are. (Other wrapper subclasses,
    e.g. quantized tensors, are written as their inner tensors: :mod:`tying.checkpoint.wrapped`.)"""
    return [k for k, v in state.items() if is_sharded(v)]


def save(model: nn.Module, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s ``state_dict`` to a safetensors file, each tie group once, with the tie
    spec (and transforms) in the header metadata; crash-safe (temporary folder, fsync, rename:
    :func:`tying._io.atomic_write`).

    ``metadata`` adds string entries to the header (the keys ``"tying"`` and ``"format"`` are
    reserved). Distinct Parameters that merely overlap in memory (undeclared views) are written
    as separate copies, with a warning. Raises :class:`CheckpointError` for a model whose declared
    ties are broken (call :func:`tying.retie` or :func:`tying.untie` first), that holds meta
    tensors (call :func:`tying.materialize` first) or sharded tensors (FSDP2: call
    :func:`tying.distributed.save` on every rank, which gathers them). A ``path`` that is a folder
    or lies in a folder that does not exist raises ``IsADirectoryError`` / ``FileNotFoundError``
    naming it.
    """
    model = unwrap(model)
    path = Path(path)
    require_savable(model, path)
    state = model.state_dict()
    sharded = sharded_keys(state)
    if sharded:
        raise CheckpointError(
            f"refusing to write {str(path)!r}: {plural(len(sharded), 'tensor')} sharded ({', '.join(sharded[:3])}...); "
            "call tying.distributed.save(model, path) on every rank, which gathers them and writes from rank 0"
        )
    return save_state_dict(state, path, spec=get_spec(model), metadata=metadata)


def require_savable(model: nn.Module, path: Path) -> None:
    """Raise :class:`CheckpointError` unless every declared tie of ``model`` holds: a file must
    never record a spec that its tensors contradict."""
    require_intact(
        model,
        CheckpointError,
        f"refusing to write {str(path)!r}",
        "call tying.retie(model) to restore them or tying.untie(model, path) to drop them",
    )


def save_state_dict(
    state: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    spec: TieSpec | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a plain ``state_dict`` (CPU or device tensors; entries that are the same tensor view
    are tied and stored once) and the tie ``spec`` it belongs to, in the format of :func:`save`.
    The writer behind :func:`save` and :func:`tying.distributed.save`."""
    path = Path(path)
    spec = spec or TieSpec()
    if metadata is not None:
        bad = [k for k, v in metadata.items() if k in _RESERVED or not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise CheckpointError(f"metadata for {str(path)!r}: keys {_RESERVED} are reserved and values must be strings; bad: {bad}")
    meta = [k for k, t in state.items() if t.device.type == "meta"]
    if meta:
        raise CheckpointError(
            f"refusing to write {str(path)!r}: {len(meta)} tensors are on the meta device ({', '.join(meta[:3])}...); "
            "call tying.materialize(model, device) and load or initialise the weights first"
        )
    # Spec sources first, so a group is stored under the name its declaration uses.
    preferred = source_keys(spec)
    position = {k: i for i, k in enumerate(state)}
    order = sorted(state, key=lambda k: (k not in preferred, position[k]))
    kept: dict[tuple[object, ...], str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key in order:
        t = state[key]
        ak = _alias_key(t)
        if ak in kept:
            aliases[key] = kept[ak]
        else:
            kept[ak] = key
            tensors[key] = t
    # File order follows the model; a wrapped (quantized) tensor is stored as its inner tensors.
    tensors, wrapped = flatten({k: tensors[k] for k in state if k in tensors}, str(path))
    _separate_overlapping(tensors, path)
    # The spec implies its targets' aliases; keeping them out halves the header of heavily tied models.
    implied = implied_aliases(spec, set(tensors) | set(wrapped), aliases)
    aliases = {k: v for k, v in aliases.items() if implied.get(k) != v}
    header = {
        "format": "pt",
        META_KEY: json.dumps({**spec.to_dict(), "aliases": aliases, **({"wrapped": wrapped} if wrapped else {})}, sort_keys=True),
    }
    header.update(metadata or {})
    return atomic_save_file({k: v.contiguous() for k, v in tensors.items()}, path, header)


def _separate_overlapping(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses entries sharing memory; copy the distinct-but-overlapping ones."""
    seen: dict[tuple[object, int], str] = {}
    for key, t in list(tensors.items()):
        if t.numel() == 0:
            continue
        sk = (t.device, t.untyped_storage().data_ptr())
        if sk in seen:
            warnings.warn(
                f"{str(path)!r}: {key!r} shares memory with {seen[sk]!r} but is a different view and not a declared tie; "
                "it is saved as an independent copy",
                stacklevel=4,  # the caller of tying.save
            )
            tensors[key] = t.clone()
        else:
            seen[sk] = key
