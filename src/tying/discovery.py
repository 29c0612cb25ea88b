"""Finding the ties a model actually holds, and counting what they save."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tying._paths import _PARAMETRIZED_KEY, logical_path, parametrization_list, unwrap
from tying._unionfind import UnionFind
from tying.sharing import summary_lines
from tying.transforms import is_tying_parametrization

__all__ = ["TieMember", "TieGroup", "find_ties", "Summary", "SummaryRow", "summary", "format_bytes"]


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
    match = _PARAMETRIZED_KEY.match(key)
    if match is None:
        return "parameter"
    owner = model.get_submodule(match.group("owner") or "")
    transform = is_tying_parametrization(owner, match.group("name"))
    if not match.group("index") and transform is not None:
        return transform
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
    match = _PARAMETRIZED_KEY.match(key)
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


@dataclass(frozen=True)
class SummaryRow:
    """One tie group in a :class:`Summary`."""

    paths: tuple[str, ...]
    vias: tuple[str, ...]
    shape: tuple[int, ...]
    numel: int
    bytes_saved: int


@dataclass
class Summary:
    """Parameter accounting of a model with ties (see :func:`summary`)."""

    total_parameters: int
    unique_parameters: int
    total_bytes: int
    unique_bytes: int
    rows: list[SummaryRow] = field(default_factory=list)
    #: One line per layer list shared across depth (:func:`tying.share_layers`): layer -> set.
    sharing: list[str] = field(default_factory=list)

    @property
    def bytes_saved(self) -> int:
        return self.total_bytes - self.unique_bytes

    def __str__(self) -> str:
        header = ("group", "paths", "shape", "numel", "saved")
        body = [
            (
                str(i),
                ", ".join(p if v == "parameter" else f"{p} ({v})" for p, v in zip(r.paths, r.vias, strict=True)),
                "x".join(map(str, r.shape)),
                f"{r.numel:,}",
                format_bytes(r.bytes_saved),
            )
            for i, r in enumerate(self.rows, 1)
        ]
        lines = []
        if body:
            widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
            fmt = lambda row: "  ".join(  # noqa: E731
                cell.rjust(w) if c in (0, 3, 4) else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            lines += [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, body), ""]
        else:
            lines += ["no tied parameters", ""]
        lines += [
            f"parameters (with duplicates, as in state_dict): {self.total_parameters:,}",
            f"unique parameters:                              {self.unique_parameters:,}",
            f"bytes saved by tying:                           {format_bytes(self.bytes_saved)}",
            *self.sharing,
        ]
        return "\n".join(lines)


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``"512 B"``, ``"1.5 KiB"``, ``"3.2 GiB"`` (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError  # pragma: no cover


def summary(model: nn.Module) -> Summary:
    """Count parameters with duplicates (every ``state_dict`` entry, as naive counts do) and
    unique (each shared tensor once; overlapping memory once), the bytes tying saves, and one
    row per tie group from :func:`find_ties`. ``print(summary(model))`` gives an aligned table."""
    model = unwrap(model)
    entries = list(model.named_parameters(remove_duplicate=False))
    total = sum(p.numel() for _, p in entries)
    total_bytes = sum(p.numel() * p.element_size() for _, p in entries)
    per_key = dict(entries)
    unique, unique_bytes = total, total_bytes
    rows = []
    for g in find_ties(model):
        group_params = [per_key[m.state_key] for m in g.members]
        members_numel = sum(p.numel() for p in group_params)
        members_bytes = sum(p.numel() * p.element_size() for p in group_params)
        unique -= members_numel - g.numel
        unique_bytes -= members_bytes - g.nbytes
        rows.append(
            SummaryRow(tuple(g.paths), tuple(m.via for m in g.members), g.members[0].shape, g.numel, members_bytes - g.nbytes)
        )
    return Summary(total, unique, total_bytes, unique_bytes, rows, summary_lines(model))

