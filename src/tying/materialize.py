"""Meta-device initialisation that keeps ties: allocate and initialise each tie group once.

Two ways to build a model without memory for its weights:

* ``with torch.device("meta"): model = Model(...)`` — parameters *and* buffers on the meta device;
  buffers computed in ``__init__`` (rotary ``inv_freq``, ``position_ids``, sinusoidal tables) have
  no values, so the initialiser must re-create them (transformers' ``initialize_weights`` does);
* ``with tying.empty_parameters(): model = Model(...)`` — parameters on meta, buffers real
  (accelerate's ``init_empty_weights(include_buffers=False)``), for models whose buffers nothing
  else re-creates.

Either way :func:`materialize` allocates the parameters once per Parameter object (so every tie
holds), keeps real buffers' values, initialises each tie group once, and refuses to hand back a
non-persistent buffer that has no values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import torch
from torch import nn

from tying._paths import registrations, unwrap
from tying.core import retie
from tying.errors import TieError
from tying.graph import plain_sources
from tying.integrations import own_initialiser
from tying.spec import get_spec

__all__ = ["materialize", "empty_parameters"]


@contextmanager
def empty_parameters() -> Iterator[None]:
    """Build modules with their parameters on the meta device and their buffers real.

    Inside the block every Parameter a module registers is replaced by a meta Parameter of the
    same shape, dtype and ``requires_grad`` (initialisation code that runs after registration,
    like ``reset_parameters`` in ``nn.Linear.__init__``, then costs nothing); buffers are created
    as usual, with their values. A Parameter that is on meta already is registered as it is, so a
    tie made in ``__init__`` by assignment (``self.head.weight = self.embed.weight``) stays one
    object — unlike accelerate's ``init_empty_weights``, which wraps every assignment in a new
    Parameter. Then call :func:`materialize`.
    """
    original = nn.Module.register_parameter

    def register_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register_parameter  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def materialize(
    model: nn.Module,
    device: torch.device | str,
    *,
    init: bool | Callable[[nn.Module], None] = True,
) -> nn.Module:
    """Allocate every meta parameter and buffer of ``model`` on ``device`` (like
    :meth:`torch.nn.Module.to_empty`) keeping every tie, then initialise each tie group once.

    ``Module.to_empty`` creates one new tensor per registration site, so a model built on the meta
    device and materialised with it is no longer tied. Here each Parameter *object* gets one new
    tensor, shared by all its paths, and :func:`tying.retie` re-applies the declared spec.
    Tensors that are not on meta (buffers built under :func:`empty_parameters`) are moved to
    ``device`` with their values.

    ``init`` says how the new memory is initialised:

    * ``True`` (default): the model's own initialisation, as an eager build does it — a
      transformers model's ``initialize_weights`` (which also re-computes its non-persistent
      buffers), otherwise ``reset_parameters()`` of every module that defines it, **children
      before parents**, so a parent's own scheme (a GPT-2 ``std=0.02``) is not overwritten by its
      children's defaults. For a module tree that initialises itself this way (``reset_parameters``
      at the end of each ``__init__``, as this project's models do) the values equal an eager build's
      under the same seed: the random draws happen in the same order, including the draws an
      eager build makes for a tied target before the tie replaces it (drawn into scratch memory);
    * ``fn``: ``fn(module)`` on every module, children before parents (``Module.apply``'s order);
    * ``False``: no initialisation (load a checkpoint next).

    A shared tensor is initialised only through its *owner* — the declared source's module, or the
    first path in ``named_parameters`` order for undeclared sharing — so the result does not
    depend on module order; other registrations of it read scratch memory meanwhile.

    Raises :class:`TieError` (naming the buffers, and the remedy) when a non-persistent buffer was
    built on meta and the initialiser did not re-create it: no checkpoint holds such a buffer, so
    it would keep garbage. Persistent meta buffers are allocated empty, to be filled by a
    checkpoint (:func:`tying.load`) or by the initialiser. Returns ``model``.
    """
    inner = unwrap(model)  # a torch.compile / DDP wrapper's paths carry a prefix the spec lacks
    empty = _allocate(inner, torch.device(device))
    versions = {key: b._version for key, b in empty.items()}
    if init:
        # Initialisers write plain weights: weight-normalized tie groups are plain meanwhile, and
        # are normalized from the initialised values on leaving (as an eager build does).
        run = init if callable(init) else None
        with plain_sources(inner):
            _init_once(inner, (lambda: inner.apply(run)) if run else own_initialiser(inner) or (lambda: inner.apply(_reset)))
    else:
        retie(inner)
    now = dict(inner.named_buffers(remove_duplicate=False))
    # A buffer the initialiser re-created is a new tensor or was written in place (its version moved).
    stale = [key for key, b in empty.items() if now.get(key) is b and b._version == versions[key]]
    if stale:
        raise TieError(
            f"{type(inner).__name__}: the non-persistent buffers {', '.join(map(repr, stale))} were built on the meta "
            "device and nothing re-created them, so they hold no values (and no checkpoint stores them). Build the "
            "model under tying.empty_parameters() instead of torch.device('meta') (parameters on meta, buffers real), "
            "or pass init= a function that re-creates them"
        )
    return model


def _allocate(model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """Give every parameter and buffer of ``model`` memory on ``device``, one new tensor per tensor
    object (values kept for tensors not on meta). Returns the non-persistent buffers that were on
    meta, by path: nothing but the initialiser can give them values."""
    new: dict[int, torch.Tensor] = {}

    def moved(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in new:
            data = torch.empty_like(t, device=device) if t.device.type == "meta" else t.detach().to(device, copy=True)
            new[id(t)] = nn.Parameter(data, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else data
        return new[id(t)]

    empty = {
        key: b
        for key, b in model.named_buffers(remove_duplicate=False)
        if b.device.type == "meta" and key.rpartition(".")[2] in model.get_submodule(key.rpartition(".")[0])._non_persistent_buffers_set
    }
    with torch.no_grad():
        for module in model.modules():
            for name, p in module._parameters.items():
                if p is not None:
                    module._parameters[name] = cast(nn.Parameter, moved(p))
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = moved(b)
    return {key: moved(b) for key, b in empty.items()}


def _reset(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()


def _init_once(model: nn.Module, initialise: Callable[[], object]) -> None:
    """Run ``initialise()`` with every registration of a shared Parameter but its owner's holding
    scratch memory, so each tie group is initialised once, through its owner."""
    sources = {t.source for t in get_spec(model).ties}
    regs = registrations(model)
    owner: dict[int, int] = {}
    for i, r in enumerate(regs):  # a declared source owns its group; else the first registration does
        if id(r.param) not in owner or any(k in sources for k in r.keys):
            owner[id(r.param)] = i
    hidden = [r for i, r in enumerate(regs) if owner[id(r.param)] != i]
    try:
        for r in hidden:
            # Real scratch memory, not meta: an eager build draws random values for these too, and
            # the draws must happen for the owner's values to come out as an eager build's.
            r.module._parameters[r.name] = nn.Parameter(torch.empty_like(r.param), r.param.requires_grad)
        with torch.no_grad():
            initialise()
    finally:
        for r in hidden:
            r.module._parameters[r.name] = r.param
