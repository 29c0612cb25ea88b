"""Finding the ties a model actually holds (:mod:`tying.accounting` counts what they save)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tying._paths import logical_path, parametrization_list, parametrized_match, unwrap
from tying._unionfind import UnionFind
from tying.transforms import held_transform

__all__ = ["TieMember", "TieGroup", "find_ties"]


@dataclass(frozen=True)
class TieMember:
    """One path of a tie group.

    ``via`` says how the path reaches the group's data:
    ``"parameter"`` — it holds the shared Parameter object itself;
    ``"transpose"`` — tying's :class:`~tying.transforms.Transpose` parametrization reads it transposed
    (in general the name of the transform, :data:`tying.transforms.TRANSFORMS`);
    ``"parametrization:<Names>"`` — another parametrization reads it;
    ``"view"`` / ``"transposed view"`` / ``"overlapping view"`` — a *distinct* Parameter over the
    same memory (a "fake tie": identity checks miss it, and optimizers treat it as separate).
    """

    path: str
    state_key: str
    shape: tuple[int, ...]
    via: str


@dataclass(frozen=True)
class TieGroup:
    """Paths that share data. ``kind`` is ``"shared"`` when they all reach one Parameter object,
    ``"storage"`` when distinct Parameters overlap in memory."""

    members: tuple[TieMember, ...]
    kind: str
    numel: int
    nbytes: int

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.members]


def _via(key: str, model: nn.Module) -> str:
    match = parametrized_match(key, model)
    if match is None:
        return "parameter"
    owner = model.get_submodule(match.group("owner") or "")
    transform = held_transform(owner, match.group("name"))
    if not match.group("index") and transform is not None:
        return str(transform.name)
    return "parametrization:" + "+".join(type(p).__name__ for p in parametrization_list(owner, match.group("name")))


def _has_storage(t: torch.Tensor) -> bool:
    # Meta, XLA and ZeRO-partitioned tensors have no comparable address, nor have wrapper
    # subclasses such as FSDP2's DTensor shards (their storage is not accessible): identity only.
    return (
        t.device.type in ("cpu", "cuda", "mps")
        and not is_traceable_wrapper_subclass(t)
        and t.numel() > 0
        and t.untyped_storage().data_ptr() != 0
    )


def _byte_range(t: torch.Tensor) -> tuple[int, int]:
    """Bytes of its storage that ``t`` may touch (from its offset, shape and strides)."""
    size = t.element_size()
    start = int(t.storage_offset()) * size
    extent = sum((int(n) - 1) * abs(int(s)) for n, s in zip(t.shape, t.stride(), strict=True)) + 1
    return start, start + extent * size


def _view_relation(t: torch.Tensor, ref: torch.Tensor) -> str:
    if t.storage_offset() == ref.storage_offset() and t.shape == ref.shape and t.stride() == ref.stride():
        return "view"
    if (
        t.dim() >= 2
        and t.storage_offset() == ref.storage_offset()
        and t.transpose(0, 1).shape == ref.shape
        and t.transpose(0, 1).stride() == ref.stride()
    ):
        return "transposed view"
    return "overlapping view"


def find_ties(model: nn.Module) -> list[TieGroup]:
    """Every group of parameter paths in ``model`` that share data, in ``named_parameters`` order.

    Finds (1) paths holding the same ``nn.Parameter`` object — what
    ``accelerate.utils.find_tied_parameters`` finds — including a parametrization's ``original``
    (so transposed ties show as ``via="transpose"`` under the parametrized path, e.g.
    ``decoder.weight``), and (2) distinct Parameters over overlapping memory (views, slices,
    ``nn.Parameter(w.data.t())``), which identity checks miss. Meta tensors have no memory to
    compare and are grouped by identity only. Deterministic: groups ordered by their first path,
    members in ``named_parameters`` order.
    """
    model = unwrap(model)
    keys: list[tuple[str, nn.Parameter]] = list(model.named_parameters(remove_duplicate=False))
    by_object: dict[int, list[int]] = {}
    for i, (_, p) in enumerate(keys):
        by_object.setdefault(id(p), []).append(i)
    objects = list(by_object)  # in first-appearance order
    param_of = {id(p): p for _, p in keys}

    # Union distinct objects whose memory overlaps (same storage, intersecting byte ranges).
    sets = UnionFind(objects)
    by_storage: dict[tuple[str, int], list[int]] = {}
    for o in objects:
        p = param_of[o]
        if _has_storage(p):
            by_storage.setdefault((str(p.device), p.untyped_storage().data_ptr()), []).append(o)
    for same_storage in by_storage.values():
        spans = sorted(same_storage, key=lambda o: _byte_range(param_of[o]))
        end, head = -1, None
        for o in spans:
            lo, hi = _byte_range(param_of[o])
            if head is not None and lo < end:
                sets.union([head, o])
                end = max(end, hi)
            else:
                head, end = o, hi

    groups: list[TieGroup] = []
    for objs in sets.groups().values():
        indices = sorted(i for o in objs for i in by_object[o])
        if len(indices) < 2:
            continue
        first = keys[indices[0]][1]
        members: list[TieMember] = []
        for i in indices:
            key, p = keys[i]
            via = _via(key, model) if p is first else _view_relation(p, first)
            members.append(TieMember(logical_path(key, model), key, tuple(_shape_as_read(key, p, model)), via))
        nbytes = _union_bytes([param_of[o] for o in objs])
        numel = first.numel() if len(objs) == 1 else nbytes // first.element_size()
        groups.append(TieGroup(tuple(members), "shared" if len(objs) == 1 else "storage", numel, nbytes))
    return groups


def _shape_as_read(key: str, p: torch.Tensor, model: nn.Module) -> torch.Size:
    match = parametrized_match(key, model)
    if match is None or match.group("index"):
        return p.shape
    owner = model.get_submodule(match.group("owner") or "")
    with torch.no_grad():
        return getattr(owner, match.group("name")).shape


def _union_bytes(params: list[torch.Tensor]) -> int:
    """Bytes of memory the tensors occupy together (overlaps counted once)."""
    if len(params) == 1 or not all(_has_storage(p) for p in params):
        return params[0].numel() * params[0].element_size()
    spans = sorted(_byte_range(p) for p in params)
    total, (lo, hi) = 0, spans[0]
    for a, b in spans[1:]:
        if a < hi:
            hi = max(hi, b)
        else:
            total, lo, hi = total + hi - lo, a, b
    return total + hi - lo
