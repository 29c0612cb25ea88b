"""A vocabulary resize in two steps: :func:`plan_resize` checks everything and computes every new
tensor without changing the model; :func:`commit` writes them, keeping each Parameter object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from tying.discovery import find_ties
from tying.errors import TieError
from tying.resize.conventions import set_vocab_size, vocab_buffers, vocab_config_entries
from tying.resize.sites import Site, size_attribute
from tying.spec import get_spec

#: ``init(path, old, new)``: fill ``new`` (the new rows, vocabulary dimension first) in place,
#: given ``old`` (the existing rows, vocabulary dimension first) of the Parameter (or vocabulary
#: buffer) at ``path``.
RowInit = Callable[[str, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class ResizedParameter:
    """One resized Parameter object: every path reading it (canonical path first: the declared
    source, else the first in ``named_parameters`` order), the dimension resized in its own
    layout, and its shapes."""

    paths: tuple[str, ...]
    dim: int
    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]


@dataclass(frozen=True)
class VocabResize:
    """What :func:`tying.resize_vocab` did."""

    old_size: int
    new_size: int
    parameters: tuple[ResizedParameter, ...]
    #: ``"<path>: <state key>"`` for each optimizer state tensor resized.
    optimizer_state: tuple[str, ...] = ()
    #: Vocabulary buffers resized (``final_logits_bias``), recorded like parameters.
    buffers: tuple[ResizedParameter, ...] = ()


@dataclass
class _Entry:
    """One Parameter to resize along ``dim``, its paths (canonical first), its sites, its new tensors."""

    param: nn.Parameter
    dim: int
    paths: tuple[str, ...]
    sites: list[Site]
    value: torch.Tensor | None = None
    grad: torch.Tensor | None = None


@dataclass
class Plan:
    """Everything a resize writes, computed before anything changes."""

    model: nn.Module
    old_size: int
    new_size: int
    entries: list[_Entry]
    #: ``(path, buffer, dimension, new value)`` of each vocabulary buffer.
    buffers: list[tuple[str, torch.Tensor, int, torch.Tensor]] = field(default_factory=list)
    #: ``(optimizer state of a Parameter, key, canonical path, new value)``.
    state: list[tuple[dict, str, str, torch.Tensor]] = field(default_factory=list)
    configs: list[tuple[object, str]] = field(default_factory=list)
    readers: list[nn.Module] = field(default_factory=list)


def _resized(t: torch.Tensor, dim: int, size: int, fill: Callable[[torch.Tensor, torch.Tensor], None] | None) -> torch.Tensor:
    """``t`` with ``size`` entries along ``dim``: its first ones kept exactly, new ones filled by
    ``fill(old, new)`` (both with ``dim`` moved first) or zero."""
    keep = min(t.shape[dim], size)
    shape = list(t.shape)
    shape[dim] = size
    out = t.new_zeros(shape)
    out.narrow(dim, 0, keep).copy_(t.narrow(dim, 0, keep))
    if size > keep and fill is not None:
        fill(t.movedim(dim, 0), out.narrow(dim, keep, size - keep).movedim(dim, 0))
    return out


def _mean_rows(old: torch.Tensor, new: torch.Tensor) -> None:
    new.copy_(old.mean(0, keepdim=True).expand_as(new))


def _entries(model: nn.Module, sites: list[Site], dims: dict[int, int]) -> list[_Entry]:
    """One entry per Parameter in ``dims``, with its canonical path (the declared source) first."""
    groups: dict[int, list[Site]] = {}
    for s in sites:
        if id(s.param) in dims:
            groups.setdefault(id(s.param), []).append(s)
    sources = {t.source for t in get_spec(model).ties}
    entries = []
    for pid, members in groups.items():
        member_paths = [p for s in members for p in s.paths]
        canonical = next((p for p in member_paths if p in sources), member_paths[0])
        paths = (canonical, *(p for p in member_paths if p != canonical))
        entries.append(_Entry(members[0].param, dims[pid], paths, members))
    return entries


def _check(model: nn.Module, entries: list[_Entry], new_size: int) -> int:
    """The old vocabulary size; raises when sizes disagree, views would separate or a
    ``padding_idx`` would be cut off."""
    sizes = {e.param.shape[e.dim] for e in entries}
    if len(sizes) > 1:
        listing = ", ".join(
            f"{e.paths[0]!r} has {e.param.shape[e.dim]} along dimension {e.dim} (shape {list(e.param.shape)})" for e in entries
        )
        raise ValueError(f"vocabulary sizes disagree: {listing}")
    resized = {id(e.param) for e in entries}
    keyed = dict(model.named_parameters(remove_duplicate=False))
    for g in find_ties(model):
        if g.kind == "storage" and any(id(keyed[m.state_key]) in resized for m in g.members):
            raise TieError(
                f"cannot resize {', '.join(map(repr, g.paths))}: they are distinct Parameters over the same memory "
                "(views), which resizing would separate; declare the tie with tying.tie or untie them first"
            )
    for e in entries:
        for s in e.sites:
            pad = getattr(s.module, "padding_idx", None)
            if size_attribute(s.module, s.name, s.read_dim(e.dim)) == "num_embeddings" and pad is not None and pad >= new_size:
                raise ValueError(
                    f"cannot shrink {s.path!r} to {new_size} rows: its padding_idx {pad} would be cut off; "
                    f"set padding_idx to None or a row below {new_size} first"
                )
    return sizes.pop()


def plan_resize(
    model: nn.Module,
    sites: list[Site],
    dims: dict[int, int],
    new_size: int,
    init: RowInit | None,
    optimizer: torch.optim.Optimizer | None,
) -> Plan:
    """Check the resize of the Parameters in ``dims`` (:func:`~tying.resize.sites.closure`) and
    compute every new tensor (``init`` included); the model is left as it is."""
    entries = _entries(model, sites, dims)
    plan = Plan(model, _check(model, entries, new_size), new_size, entries)

    def fill(path: str) -> Callable[[torch.Tensor, torch.Tensor], None]:
        return _mean_rows if init is None else (lambda old, new: init(path, old, new))

    buffers = vocab_buffers(model, plan.old_size)
    plan.configs, plan.readers = vocab_config_entries(model, plan.old_size)
    with torch.no_grad():
        plan.buffers = [(name, b, dim, _resized(b, dim, new_size, fill(name))) for name, b, dim in buffers]
        for e in entries:
            canonical = e.paths[0]
            e.value = _resized(e.param.detach(), e.dim, new_size, fill(canonical))
            e.grad = None if e.param.grad is None else _resized(e.param.grad, e.dim, new_size, None)
            state = optimizer.state.get(e.param, {}) if optimizer is not None else {}
            for key, value in state.items():
                if not isinstance(value, torch.Tensor) or value.dim() == 0:
                    continue
                if value.shape != e.param.shape:
                    raise ValueError(
                        f"cannot resize the optimizer state {key!r} of {canonical!r}: its shape {list(value.shape)} is "
                        f"neither the parameter's {list(e.param.shape)} nor a scalar; create the optimizer after resizing"
                    )
                plan.state.append((state, key, canonical, _resized(value, e.dim, new_size, None)))
    return plan


def commit(plan: Plan) -> VocabResize:
    """Write what :func:`plan_resize` computed; each Parameter and buffer keeps its identity."""
    shapes = [tuple(e.param.shape) for e in plan.entries]
    buffer_shapes = [tuple(b.shape) for _, b, _, _ in plan.buffers]
    for e in plan.entries:
        assert e.value is not None  # set by plan_resize
        # A live autograd graph keeps the leaf's gradient accumulator, which records the old
        # shape and is reused by the next forward; ``.data`` of another dtype drops it (as
        # ``module.to(dtype)`` does), then the resized data goes in.
        other = torch.float32 if e.value.dtype == torch.float64 else torch.float64
        e.param.data = torch.empty(0, dtype=other, device=e.value.device)
        e.param.data = e.value
        if e.grad is not None:
            e.param.grad = e.grad
    for e in plan.entries:
        for s in e.sites:
            attribute = size_attribute(s.module, s.name, s.read_dim(e.dim))
            if attribute is not None:
                setattr(s.module, attribute, plan.new_size)
    for _, buffer, _, value in plan.buffers:
        buffer.data = value  # the same tensor object, like the parameters
    for entries, key, _, value in plan.state:
        entries[key] = value
    set_vocab_size(plan.model, plan.configs, plan.readers, plan.new_size)
    return VocabResize(
        plan.old_size,
        plan.new_size,
        tuple(ResizedParameter(e.paths, e.dim, shape, tuple(e.param.shape)) for e, shape in zip(plan.entries, shapes, strict=True)),
        tuple(f"{canonical}: {key}" for _, key, canonical, _ in plan.state),
        tuple(
            ResizedParameter((name,), dim, shape, tuple(buffer.shape))
            for (name, buffer, dim, _), shape in zip(plan.buffers, buffer_shapes, strict=True)
        ),
    )
