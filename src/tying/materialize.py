"""Meta-device initialisation that keeps ties: allocate and initialise each tie group once."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tying._paths import unwrap
from tying.core import retie
from tying.spec import get_spec

__all__ = ["materialize"]

def _sites(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Parameter]]:
    """Every registration of a Parameter: (path, owning module, attribute, Parameter)."""
    out = []
    for mod_path, module in model.named_modules(remove_duplicate=False):
        for name, p in module._parameters.items():
            if p is not None:
                out.append((f"{mod_path}.{name}" if mod_path else name, module, name, p))
    return out


def materialize(
    model: nn.Module,
    device: torch.device | str,
    *,
    init: bool | Callable[[nn.Module], None] = True,
) -> nn.Module:
    """Allocate every parameter and buffer of ``model`` on ``device`` (like
    :meth:`torch.nn.Module.to_empty`) keeping every tie, then initialise each tie group once.

    ``Module.to_empty`` creates one new tensor per registration site, so a model built on the meta
    device and materialised with it is no longer tied. Here each Parameter *object* gets one new
    tensor, shared by all its paths, and :func:`tying.retie` re-applies the declared spec.

    ``init=True`` calls ``reset_parameters()`` on every module that defines it; ``init=fn`` calls
    ``fn(module)`` on every module (e.g. a Hugging Face model's ``_init_weights``); ``init=False``
    leaves the memory uninitialised (load a checkpoint next). Either way a shared tensor is
    initialised only through its *owner* — the declared source's module, or the first path in
    ``named_parameters`` order for undeclared sharing — so the result does not depend on module
    order (other paths read a meta placeholder while the initialisers run). Buffers are allocated
    empty, as ``to_empty`` does: modules re-create them in ``reset_parameters`` or a checkpoint
    fills them. Returns ``model``.
    """
    inner = unwrap(model)  # a torch.compile / DDP wrapper's paths carry a prefix the spec lacks
    device = torch.device(device)
    new: dict[int, torch.Tensor] = {}

    def moved(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in new:
            data = torch.empty_like(t, device=device)
            new[id(t)] = nn.Parameter(data, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else data
        return new[id(t)]

    with torch.no_grad():
        for module in inner.modules():
            for name, p in module._parameters.items():
                if p is not None:
                    module._parameters[name] = moved(p)
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = moved(b)
    retie(inner)
    if init:
        _init_once(inner, init if callable(init) else _reset)
    return model


def _reset(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()


def _init_once(model: nn.Module, fn: Callable[[nn.Module], None]) -> None:
    sources = {t.source for t in get_spec(model).ties}
    sites = _sites(model)
    owner: dict[int, str] = {}
    for path, _, _, p in sites:  # a declared source owns its group; else the first path does
        if id(p) not in owner or path in sources:
            owner[id(p)] = path
    # Sites that are not their Parameter's owner read a meta placeholder during init.
    hidden = [(m, n, p) for path, m, n, p in sites if owner[id(p)] != path]
    try:
        for m, n, p in hidden:
            m._parameters[n] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="meta"), p.requires_grad)
        with torch.no_grad():
            for module in model.modules():
                fn(module)
    finally:
        for m, n, p in hidden:
            m._parameters[n] = p
