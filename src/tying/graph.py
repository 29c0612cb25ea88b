"""Making the module graph hold what the spec declares (which Parameter object, or which
parametrization, each path holds), and telling where it does not.

:func:`apply_spec` is what :func:`tying.retie` runs; :func:`tie_broken` is what
:func:`tying.verify` reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from tying._paths import ParamRef, parametrization_list, resolve
from tying.adapters import adapters_break
from tying.checks import check_compatible, kinds_differ, tensor_kind
from tying.errors import TieError
from tying.spec import Tie, TieSpec, get_spec
from tying.transforms import SOURCE_PARAMETRIZATIONS, TieTransform, held_transform, source_parametrization


def set_identity(ref: ParamRef, param: nn.Parameter) -> None:
    """Make ``ref`` hold ``param`` itself."""
    setattr(ref.owner, ref.name, param)


def install_transform(ref: ParamRef, source: nn.Parameter, transform: TieTransform) -> None:
    """Make ``ref`` read ``transform(source)`` through tying's parametrization for it."""
    if not ref.parametrized:
        # Swap in a meta placeholder first: registering a parametrization ``set_``s the old
        # Parameter in place, which would reshape it for every other path still holding it.
        setattr(ref.owner, ref.name, nn.Parameter(torch.empty(ref.param.shape, device="meta", dtype=ref.param.dtype)))
        parametrize.register_parametrization(ref.owner, ref.name, transform, unsafe=True)
    parametrization_list(ref.owner, ref.name).original = source


def drop_transform(ref: ParamRef, param: nn.Parameter) -> None:
    """Remove tying's parametrization from ``ref`` and register ``param`` in its place."""
    # leave_parametrized=False: the default would ``set_`` the original, i.e. the shared source.
    parametrize.remove_parametrizations(ref.owner, ref.name, leave_parametrized=False)
    setattr(ref.owner, ref.name, param)


def fresh(value: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    """A new Parameter holding a copy of ``value`` (``requires_grad`` as ``like``)."""
    return nn.Parameter(value.detach().clone(), requires_grad=like.requires_grad)


def own_copy(ref: ParamRef) -> None:
    """Give ``ref`` a Parameter of its own holding its current values."""
    set_identity(ref, fresh(ref.param, ref.param))


def slot(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """``(owner module, attribute name)`` of ``path``."""
    owner_path, _, name = path.rpartition(".")
    return (model.get_submodule(owner_path) if owner_path else model), name


def plist_at(model: nn.Module, path: str) -> parametrize.ParametrizationList | None:
    """The parametrizations computing ``path``, or ``None`` for a plain tensor."""
    owner, name = slot(model, path)
    return parametrization_list(owner, name) if parametrize.is_parametrized(owner, name) else None


def _originals(plist: parametrize.ParametrizationList) -> list[str]:
    return [n for n, _ in plist.named_parameters(recurse=False)]


def _reads_through(model: nn.Module, t: Tie, source: parametrize.ParametrizationList) -> bool:
    """Whether ``t.target`` reads the parametrized ``source``: the very same parametrization
    modules (then ``t``'s transform) over the very same originals."""
    target = plist_at(model, t.target)
    if target is None:
        return False
    modules = list(target)
    extra = int(t.transform is not None)
    if len(modules) != len(source) + extra or any(a is not b for a, b in zip(modules, source, strict=False)):
        return False
    if extra and not t.is_read_by(modules[-1]):
        return False
    return _originals(target) == _originals(source) and all(getattr(target, o) is getattr(source, o) for o in _originals(source))


def _install_reader(model: nn.Module, t: Tie, source: parametrize.ParametrizationList) -> None:
    """Make ``t.target`` read the parametrized ``source`` (through ``t``'s transform)."""
    owner, name = slot(model, t.target)
    target = plist_at(model, t.target)
    if target is not None:
        if len(target) == 1 and held_transform(owner, name) is not None:
            parametrize.remove_parametrizations(owner, name, leave_parametrized=False)  # tying's own transform reader
        elif list(target)[: len(source)] == list(source):
            for o in _originals(source):  # a reader whose originals were replaced (to_empty): point them back
                setattr(target, o, getattr(source, o))
            return
        else:
            raise TieError(f"cannot re-tie {t.target!r}: it carries a parametrization tying did not install")
    current = getattr(owner, name)
    setattr(owner, name, nn.Parameter(torch.empty(current.shape, device="meta", dtype=current.dtype)))
    for module in [*source, *([t.make_transform()] if t.transform is not None else [])]:
        parametrize.register_parametrization(owner, name, module, unsafe=True)
    target = parametrization_list(owner, name)
    for name_ in list(_originals(target)):
        delattr(target, name_)
    for o in _originals(source):
        setattr(target, o, getattr(source, o))


def _ensure_source_parametrization(model: nn.Module, source: str, recorded: dict[str, object]) -> parametrize.ParametrizationList:
    """The source's parametrization the spec records, applied now if the source is plain."""
    owner, name = slot(model, source)
    plist = plist_at(model, source)
    if plist is None:
        SOURCE_PARAMETRIZATIONS[str(recorded["kind"])].apply(owner, name, {k: v for k, v in recorded.items() if k != "kind"})
        return parametrization_list(owner, name)
    found = source_parametrization(plist[0]) if len(plist) == 1 else None
    want = (recorded["kind"], {k: v for k, v in recorded.items() if k != "kind"})
    if found != want:
        raise TieError(
            f"{source!r} is parametrized by {', '.join(type(p).__name__ for p in plist)} but the tie spec records "
            f"{want[0]} {want[1]}; remove that parametrization (torch.nn.utils.parametrize.remove_parametrizations)"
        )
    return plist


def tie_broken(model: nn.Module, spec: TieSpec, t: Tie) -> str | None:
    """Why ``model`` does not hold the declared tie ``t`` of ``spec``, or ``None`` if it does."""
    if t.source in spec.parametrizations:
        source = plist_at(model, t.source)
        kind = spec.parametrizations[t.source]["kind"]
        if source is None:
            return f"{t.source!r} is a plain tensor, but the spec records it as computed by {kind}"
        if not _reads_through(model, t, source):
            return f"{t.target!r} does not read {t.source!r} through the same {kind} and originals"
        return None
    try:
        src = resolve(model, t.source)
        ref = resolve(model, t.target)
    except TieError as exc:
        return str(exc)
    foreign = _foreign_parametrization(model, spec, t, src, ref) or adapters_break(model, t)
    if foreign is not None:
        return foreign
    if t.transform is None:
        if ref.param is src.param:
            return None
        differ = kinds_differ(ref.param, src.param)
        if differ is not None:
            return (
                f"distinct Parameter objects: {t.target!r} holds {tensor_kind(ref.param)}, {t.source!r} {tensor_kind(src.param)} "
                "(quantized one by one, e.g. by torchao's quantize_); quantize the group once with tying.quant.quantize_"
            )
        comparable = "meta" not in (ref.param.device.type, src.param.device.type) and tensor_kind(ref.param) == "a plain tensor"
        if comparable and ref.param.shape == src.param.shape and torch.equal(ref.param.detach().cpu(), src.param.detach().cpu()):
            return "distinct Parameter objects (equal values now, but they will drift apart in training)"
        return "distinct Parameter objects with different values"
    held = held_transform(ref.owner, ref.name) if ref.parametrized else None
    if held is None or held.name != t.transform:
        return f"{t.target!r} is a plain tensor, not a {t.transform} of the source"
    if not t.is_read_by(held):
        return f"{t.target!r} reads the {t.transform} with other parameters than declared ({held.params()})"
    if ref.param is not src.param:
        return f"{t.target!r} reads the {t.transform} of a different Parameter"
    return None


def _foreign_parametrization(model: nn.Module, spec: TieSpec, t: Tie, src: ParamRef, ref: ParamRef) -> str | None:
    """Why a parametrization tying did not install on a member breaks the tie ``t``: the member
    computes its weight from the shared tensor (whose values its ``right_inverse`` rewrote for
    every member when it was registered), so the two paths no longer read the same weight."""
    for which, r in (("target", ref), ("source", src)):
        if r.parametrized and (which == "source" or t.transform is None):
            names = "+".join(type(p).__name__ for p in _parametrizations_of(r))
            return (
                f"the {which} {r.path!r} is computed by a parametrization tying did not install ({names}) from the shared tensor, "
                "so the members no longer read one weight (its right_inverse, if any, rewrote the shared values for all of them); "
                f"remove it (torch.nn.utils.parametrize.remove_parametrizations) or tying.untie(model, {t.target!r}) first"
            )
    return None


def _parametrizations_of(ref: ParamRef) -> list[nn.Module]:
    return list(parametrization_list(ref.owner, ref.name))


@contextmanager
def plain_sources(model: nn.Module) -> Iterator[None]:
    """Within the block, each source parametrization the spec records (:func:`tying.weight_norm`) is
    replaced by the plain tensor it computes and its group's readers by plain ties to it, for
    initialisers that write a module's weight directly (``reset_parameters`` cannot reach a
    parametrization's originals); on leaving, :func:`tying.retie` puts the parametrizations back,
    computed from the values the block left."""
    spec = get_spec(model)
    for source in spec.parametrizations:
        for path in (*(t.target for t in spec.targets_of(source)), source):
            owner, name = slot(model, path)
            if parametrize.is_parametrized(owner, name):
                parametrize.remove_parametrizations(owner, name, leave_parametrized=True)
    apply_spec(model, TieSpec(spec.ties))
    try:
        yield
    finally:
        apply_spec(model, get_spec(model))


def apply_spec(model: nn.Module, spec: TieSpec) -> None:
    """Make every tie of ``spec`` hold in ``model`` (:func:`tying.retie`; the sources' values win)."""
    parametrized = {s: _ensure_source_parametrization(model, s, p) for s, p in spec.parametrizations.items()}
    for t in spec.ties:
        if t.source in parametrized:
            if not _reads_through(model, t, parametrized[t.source]):
                _install_reader(model, t, parametrized[t.source])
            continue
        src = resolve(model, t.source)
        ref = resolve(model, t.target)
        if t.transform is None:
            if ref.param is src.param:
                continue
            if ref.parametrized:
                raise TieError(f"cannot re-tie {t.target!r}: it is now parametrized; remove the parametrization or untie it")
            check_compatible(src, ref, None)
            set_identity(ref, src.param)
        else:
            held = held_transform(ref.owner, ref.name) if ref.parametrized else None
            if held is not None and t.is_read_by(held) and ref.param is src.param:
                continue
            if ref.parametrized and (held is None or not t.is_read_by(held)):
                raise TieError(f"cannot re-tie {t.target!r}: it carries a parametrization tying did not install")
            transform = t.make_transform()
            check_compatible(src, ref, transform)
            install_transform(ref, src.param, transform)
