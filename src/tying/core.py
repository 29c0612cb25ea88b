"""Declaring, applying and removing ties (:mod:`tying.verification` checks them).

Every function here keeps two things in step: the model's :class:`~tying.spec.TieSpec` (what the
user declared) and the module graph (which Parameter object each path holds). The spec is the
source of truth; :func:`retie` rebuilds the graph from it after anything that replaced
Parameters (``to_empty``, ``load_state_dict(assign=True)``, device dispatch, adapters).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from tying._paths import ParamRef, logical_path, parametrization_list, parametrized_key, resolve, slot_aliases, unwrap
from tying.errors import TieError
from tying.spec import Tie, TieSpec, Transform, get_spec, own_spec, remove_tie
from tying.transforms import SOURCE_PARAMETRIZATIONS, TRANSFORMS, apply_transform, is_tying_parametrization, source_parametrization

__all__ = ["tie", "tie_transposed", "untie", "retie", "check_tie", "declare", "weight_norm", "tie_broken", "state_key_pairs", "plain_sources"]


def target_state_key(tie_: Tie) -> str:
    """The ``state_dict`` key under which a tie's target appears once the tie is applied (for a
    source without a parametrization; see :func:`state_key_pairs`)."""
    return tie_.target if tie_.transform is None else parametrized_key(tie_.target)


def _originals_key(path: str, original: str) -> str:
    owner, _, name = path.rpartition(".")
    return f"{owner}.parametrizations.{name}.{original}" if owner else f"parametrizations.{name}.{original}"


def state_key_pairs(spec: TieSpec, tie_: Tie) -> list[tuple[str, str]]:
    """``(source key, target key)`` for each ``state_dict`` entry the tie makes one tensor: the
    source and the target's key (:func:`target_state_key`), or, for a source computed by a
    parametrization (:func:`weight_norm`), each of its originals under both paths."""
    recorded = spec.parametrizations.get(tie_.source)
    if recorded is None:
        return [(tie_.source, target_state_key(tie_))]
    originals = SOURCE_PARAMETRIZATIONS[str(recorded["kind"])].originals
    return [(_originals_key(tie_.source, o), _originals_key(tie_.target, o)) for o in originals]


def source_keys(spec: TieSpec) -> set[str]:
    """The ``state_dict`` keys holding the declared sources' tensors (a file stores a group under them)."""
    return {src for t in spec.ties for src, _ in state_key_pairs(spec, t)}


# --------------------------------------------------------------------------- helpers


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def _check_compatible(src: ParamRef, tgt: ParamRef, transform: str | None) -> None:
    s, t = src.param, tgt.param
    if transform is not None:
        if s.dim() < 2:
            raise TieError(f"tie_{transform}d needs a source with at least 2 dimensions; {src.path!r} has shape {_shape(s)}")
        want = list(apply_transform(transform, s.detach()).shape)
        # A parametrized target's ``original`` is stored in the source layout already.
        have = _shape(t) if not tgt.parametrized else list(apply_transform(transform, t.detach()).shape)
        if have != want:
            raise TieError(
                f"cannot tie {tgt.path!r} (shape {have}) to the {transform} of {src.path!r} (shape {_shape(s)}, "
                f"{'transposed' if transform == 'transpose' else 'as read'} {want}): shapes differ; the target must be "
                f"the {transform} of the source"
            )
    elif _shape(s) != _shape(t):
        hint = (
            "; use tying.tie_transposed for a transposed tie"
            if s.dim() >= 2 and _shape(t) == list(s.transpose(0, 1).shape)
            else ""
        )
        raise TieError(f"cannot tie {tgt.path!r} (shape {_shape(t)}) to {src.path!r} (shape {_shape(s)}): shapes differ{hint}")
    if s.dtype != t.dtype:
        raise TieError(
            f"cannot tie {tgt.path!r} ({t.dtype}) to {src.path!r} ({s.dtype}): dtypes differ; "
            f"convert one first, e.g. model.to({s.dtype})"
        )
    if s.device != t.device:
        raise TieError(
            f"cannot tie {tgt.path!r} (on {t.device}) to {src.path!r} (on {s.device}): devices differ; "
            "move the model to one device first"
        )


def _transform_of(ref: ParamRef) -> str | None:
    return is_tying_parametrization(ref.owner, ref.name) if ref.parametrized else None


def _set_identity(ref: ParamRef, param: nn.Parameter) -> None:
    setattr(ref.owner, ref.name, param)


def _install_transform(ref: ParamRef, source: nn.Parameter, transform: str) -> None:
    """Make ``ref`` read ``transform(source)`` through tying's parametrization for it."""
    if not ref.parametrized:
        # Swap in a meta placeholder first: registering a parametrization ``set_``s the old
        # Parameter in place, which would reshape it for every other path still holding it.
        setattr(ref.owner, ref.name, nn.Parameter(torch.empty(ref.param.shape, device="meta", dtype=ref.param.dtype)))
        parametrize.register_parametrization(ref.owner, ref.name, TRANSFORMS[transform](), unsafe=True)
    parametrization_list(ref.owner, ref.name).original = source


def _drop_transform(ref: ParamRef, param: nn.Parameter) -> None:
    """Remove tying's parametrization from ``ref`` and register ``param`` in its place."""
    # leave_parametrized=False: the default would ``set_`` the original, i.e. the shared source.
    parametrize.remove_parametrizations(ref.owner, ref.name, leave_parametrized=False)
    setattr(ref.owner, ref.name, param)


def _fresh(value: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(value.detach().clone(), requires_grad=like.requires_grad)


def _own_copy(ref: ParamRef) -> None:
    _set_identity(ref, _fresh(ref.param, ref.param))


def _slot(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    owner_path, _, name = path.rpartition(".")
    return (model.get_submodule(owner_path) if owner_path else model), name


def _plist(model: nn.Module, path: str) -> parametrize.ParametrizationList | None:
    owner, name = _slot(model, path)
    return parametrization_list(owner, name) if parametrize.is_parametrized(owner, name) else None


def _originals(plist: parametrize.ParametrizationList) -> list[str]:
    return [n for n, _ in plist.named_parameters(recurse=False)]


def _reads_through(model: nn.Module, t: Tie, source: parametrize.ParametrizationList) -> bool:
    """Whether ``t.target`` reads the parametrized ``source``: the very same parametrization
    modules (then ``t``'s transform) over the very same originals."""
    target = _plist(model, t.target)
    if target is None:
        return False
    extra = [TRANSFORMS[t.transform]] if t.transform is not None else []
    modules = list(target)
    if len(modules) != len(source) + len(extra) or any(a is not b for a, b in zip(modules, source, strict=False)):
        return False
    if extra and type(modules[-1]) is not extra[0]:
        return False
    return _originals(target) == _originals(source) and all(getattr(target, o) is getattr(source, o) for o in _originals(source))


def _install_reader(model: nn.Module, t: Tie, source: parametrize.ParametrizationList) -> None:
    """Make ``t.target`` read the parametrized ``source`` (through ``t``'s transform)."""
    owner, name = _slot(model, t.target)
    target = _plist(model, t.target)
    if target is not None:
        if len(target) == 1 and is_tying_parametrization(owner, name) is not None:
            parametrize.remove_parametrizations(owner, name, leave_parametrized=False)  # tying's own transform reader
        elif list(target)[: len(source)] == list(source):
            for o in _originals(source):  # a reader whose originals were replaced (to_empty): point them back
                setattr(target, o, getattr(source, o))
            return
        else:
            raise TieError(f"cannot re-tie {t.target!r}: it carries a parametrization tying did not install")
    current = getattr(owner, name)
    setattr(owner, name, nn.Parameter(torch.empty(current.shape, device="meta", dtype=current.dtype)))
    for module in [*source, *([TRANSFORMS[t.transform]()] if t.transform is not None else [])]:
        parametrize.register_parametrization(owner, name, module, unsafe=True)
    target = parametrization_list(owner, name)
    for name_ in list(_originals(target)):
        delattr(target, name_)
    for o in _originals(source):
        setattr(target, o, getattr(source, o))


def _ensure_source_parametrization(model: nn.Module, source: str, recorded: dict[str, object]) -> parametrize.ParametrizationList:
    """The source's parametrization the spec records, applied now if the source is plain."""
    owner, name = _slot(model, source)
    plist = _plist(model, source)
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


def _root(spec: TieSpec, path: str, verb: str) -> str:
    """The source a new tie to ``path`` must name: chains are resolved to their root."""
    existing = spec.source_of(path)
    if existing is None:
        return path
    if existing.transform is not None:
        raise TieError(
            f"cannot {verb} from {path!r}: it is itself the {existing.transform} of {existing.source!r}; "
            f"name {existing.source!r} as the source instead"
        )
    return existing.source


def check_tie(model: nn.Module, spec: TieSpec, source: str, target: str, transform: str | None = None) -> Tie | None:
    """Validate the declaration ``source -[transform]-> target`` against ``model`` and the ties
    already in ``spec``: returns the :class:`Tie` to record (its source resolved to the root of its
    group, so ties never chain), or ``None`` when that tie is declared already. Nothing changes.

    The one check behind :func:`tie`, :func:`tie_transposed`, :func:`tying.load` (ties a file
    records) and :func:`tying.hf.declare_ties`. Raises :class:`TieError` naming the paths: unknown
    or non-parameter paths, a target tied elsewhere or heading a group, a path inside a
    parametrization, shapes (as the transform reads them), dtypes or devices that differ.
    """
    if transform is not None and transform not in TRANSFORMS:
        raise TieError(f"unknown transform {transform!r} for {target!r}; known: {sorted(TRANSFORMS)}")
    root = _root(spec, source, "tie")
    if target == root:
        existing = spec.source_of(source)
        if existing is not None:
            raise TieError(
                f"{source!r} and {target!r} are tied already: {existing.describe()!r} is declared; to make "
                f"{source!r} the source, call tying.untie(model, {source!r}) and tie again"
            )
        raise TieError(f"cannot tie {target!r} to itself")
    if _check_target(spec, root, target, transform):
        return None
    if root in spec.parametrizations:
        raise TieError(
            f"cannot tie {target!r} to {root!r}: {root!r} is computed by {spec.parametrizations[root]['kind']} "
            "(tying.weight_norm); declare every tie of the group first, then apply the weight normalization"
        )
    src, ref = resolve(model, root), resolve(model, target)
    if src.parametrized:
        raise TieError(f"source {root!r} is parametrized; tie to its unparametrized tensor or remove the parametrization")
    if ref.parametrized:
        raise TieError(
            f"target {target!r} is computed by a parametrization ({type(parametrization_list(ref.owner, ref.name)[0]).__name__}); "
            "tying it would discard the parametrization; remove it first"
        )
    _check_compatible(src, ref, transform)
    return Tie(root, target, cast(Transform, transform))


def declare(model: nn.Module, ties: Iterable[Tie], *, apply: bool = True) -> None:
    """Record ``ties`` (each from :func:`check_tie`) in ``model``'s spec and, with ``apply``, make
    each target hold (or read through its transform) its source's Parameter."""
    spec = own_spec(model)
    for t in ties:
        if apply:
            src, ref = resolve(model, t.source), resolve(model, t.target)
            if t.transform is None:
                _set_identity(ref, src.param)
            else:
                _install_transform(ref, src.param, t.transform)
        spec.ties.append(t)
    _ensure_hooks(model)


def _check_target(spec: TieSpec, source: str, target: str, transform: str | None) -> bool:
    """Validate ``target`` against the spec; returns True when the same tie is already declared."""
    existing = spec.source_of(target)
    if existing is not None:
        if existing.source == source and existing.transform == transform:
            return True
        how = "" if existing.transform is None else f" ({existing.transform})"
        raise TieError(
            f"{target!r} is already tied to {existing.source!r}{how}; "
            f"call tying.untie(model, {target!r}) first to tie it to {source!r}"
        )
    readers = spec.targets_of(target)
    if readers:
        raise TieError(
            f"{target!r} is the source of a tie group ({', '.join(repr(t.target) for t in readers)}); "
            f"tie the other way round, e.g. tying.tie(model, {target!r}, ...), or untie its group first"
        )
    return False


def _ensure_hooks(model: nn.Module) -> None:
    if not getattr(model, "_tying_hooks", False):
        model.register_load_state_dict_pre_hook(_load_state_dict_pre_hook)
        model.register_load_state_dict_post_hook(_load_state_dict_post_hook)
        object.__setattr__(model, "_tying_hooks", True)


# --------------------------------------------------------------------------- public API


def tie(model: nn.Module, source: str, *targets: str) -> None:
    r"""Tie each of ``targets`` to ``source``: afterwards every target path holds the very same
    ``nn.Parameter`` object as ``source``, whose values are kept.

    One call ties any number of paths, e.g. three-way tying of a translation model
    (source embedding = target embedding = output layer, Press & Wolf 2017, arXiv 1608.05859):
    ``tie(model, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")``.

    A source that is itself an (untransformed) target resolves to its own source, so ties never
    chain. Re-declaring an existing tie is a no-op. The tie is recorded in the model's spec (see
    :func:`tying.get_spec`), re-applied by :func:`retie`, checked by :func:`tying.verify` and written by
    :func:`tying.save`. Tied paths must agree in shape, dtype and device.

    Raises:
        TieError: unknown path (with the closest names), a buffer or non-parameter, a path inside a
            parametrization, shape/dtype/device mismatch, or a target already tied to another source.
    """
    if not targets:
        raise TieError(f"tying.tie(model, {source!r}) names no target; pass one or more target paths")
    model = unwrap(model)
    work = get_spec(model)
    todo = []
    for target in dict.fromkeys(targets):
        t = check_tie(model, work, source, target)
        if t is not None:
            todo.append(t)
            work.ties.append(t)
    declare(model, todo)


def tie_transposed(model: nn.Module, source: str, target: str) -> None:
    r"""Tie ``target`` to the transpose of ``source``: ``target`` reads :math:`W_s^\top`
    (dims 0 and 1 swapped) and every gradient reaches the single leaf ``source``.

    This is the tied autoencoder (decoder :math:`W_d = W_e^\top`) and the fix for the common
    mistake ``nn.Parameter(w.t())``, which copies and unties. Implemented with a
    :class:`tying.transforms.Transpose` parametrization whose ``original`` *is* the source Parameter, so the
    target's module is unchanged and ``state_dict`` shows the tie as a shared tensor
    (``<target module>.parametrizations.<name>.original``).
    """
    model = unwrap(model)
    t = check_tie(model, get_spec(model), source, target, "transpose")
    if t is not None:
        declare(model, [t])


def untie(model: nn.Module, path: str) -> None:
    """Give ``path`` its own copy of its current values and remove it from the spec; the other
    members of its group stay tied to each other.

    The untied path holds a *new* Parameter: add it to your optimizer. Untying a group's source
    hands the group to its first remaining member (which keeps the shared Parameter object).
    A path shared by object identity without a declaration (``b.weight = a.weight``) is untied
    the same way.
    """
    model = unwrap(model)
    spec = get_spec(model)
    declared = spec.source_of(path)
    readers = spec.targets_of(path)
    if path in spec.parametrizations:
        raise TieError(
            f"cannot untie {path!r}: it is computed by {spec.parametrizations[path]['kind']} and its group reads it; "
            f"untie its targets ({', '.join(repr(t.target) for t in readers)}) one by one instead"
        )
    if declared is not None and declared.source in spec.parametrizations:
        # The target reads the parametrized source from its originals: it gets the value it reads.
        owner, name = _slot(model, path)
        parametrize.remove_parametrizations(owner, name, leave_parametrized=True)
        remove_tie(model, declared)
        return
    ref = resolve(model, path)
    aliases = slot_aliases(model, path)
    if aliases:
        modules = [p.rpartition(".")[0] or "<root>" for p in (path, *aliases)]
        raise TieError(
            f"cannot untie {path!r}: it is the same slot as {', '.join(map(repr, aliases))} (one "
            f"{type(ref.owner).__name__} registered under the paths {', '.join(map(repr, modules))}), so no path of it "
            "can hold a parameter of its own; register a separate module (e.g. copy.deepcopy) under one of those paths instead"
        )
    if declared is not None:
        remove_tie(model, declared)
        if declared.transform is None:
            _own_copy(ref)
        else:
            _drop_transform(ref, _fresh(apply_transform(declared.transform, ref.param), ref.param))
        return
    if readers:
        plain = [t for t in readers if t.transform is None]
        for t in readers:
            remove_tie(model, t)
        own = own_spec(model)
        if plain:
            # The first plain target keeps the shared object; the old source gets the copy.
            heir = plain[0].target
            own.ties.extend(Tie(heir, t.target, t.transform) for t in readers if t.target != heir)
            _own_copy(ref)
        else:
            # Only transformed readers: the first becomes a real Parameter holding what it read;
            # readers of the same transform read the same values, so they share it.
            first = readers[0]
            heir_param = _fresh(apply_transform(first.transform, ref.param), ref.param)
            for t in readers:
                same = t.transform == first.transform
                value = heir_param if same else _fresh(apply_transform(t.transform, ref.param), ref.param)
                _drop_transform(resolve(model, t.target), value)
            own.ties.extend(Tie(first.target, t.target) for t in readers[1:] if t.transform == first.transform)
        return
    shared = [k for k, q in model.named_parameters(remove_duplicate=False) if q is ref.param and logical_path(k, model) != path]
    if not shared:
        raise TieError(f"{path!r} is not tied to anything; nothing to untie")
    _own_copy(ref)


def weight_norm(model: nn.Module, path: str, *, dim: int = 0) -> None:
    r"""Weight-normalize a tied weight (Salimans & Kingma 2016, arXiv 1602.07868):
    :math:`W = g\,v / \lVert v \rVert` (norm over every dimension but ``dim``), with **one**
    :math:`g` and **one** :math:`v` for the whole tie group of ``path``.

    The group's source is parametrized by ``torch.nn.utils.parametrizations.weight_norm`` (its
    current value kept) and every target reads the source's normalized weight from the same
    originals, transposed targets through their transpose; so both uses' gradients reach one
    :math:`g` and one :math:`v`. The spec records it (``TieSpec.parametrizations``): it is
    written by :func:`tying.save`, re-applied by :func:`retie` (after ``to_empty``,
    ``load_state_dict(assign=True)``, :func:`tying.materialize`) and checked by :func:`tying.verify`.

    Order: declare the ties first, then call this. ``torch``'s ``weight_norm`` applied by hand to a
    tied module gives that module alone its own :math:`g, v` (the tie is then broken, and
    :func:`tying.verify` says so); tying a weight that is already weight-normalized is refused.

    Raises:
        TieError: ``path`` is in no tie group; the group's ties are broken; the source is already
            parametrized; or the group is normalized already with another ``dim``.
    """
    model = unwrap(model)
    spec = get_spec(model)
    declared = spec.source_of(path)
    source = path if declared is None else declared.source
    if not spec.targets_of(source):
        raise TieError(
            f"{path!r} is not tied; tying.weight_norm normalizes a tie group once for all its members "
            "(for an untied weight use torch.nn.utils.parametrizations.weight_norm)"
        )
    want = {"kind": "weight_norm", "dim": dim}
    if source in spec.parametrizations:
        if spec.parametrizations[source] == want:
            return
        raise TieError(f"{source!r} is normalized already as {spec.parametrizations[source]}; not again as {want}")
    broken = [f"{t.describe()}: {why}" for t in spec.targets_of(source) if (why := tie_broken(model, spec, t))]
    if broken:
        raise TieError(f"cannot weight-normalize {source!r}: its ties are broken ({'; '.join(broken)}); call tying.retie(model) first")
    if _plist(model, source) is not None:
        raise TieError(f"cannot weight-normalize {source!r}: it is parametrized already; remove that parametrization first")
    own_spec(model).parametrizations[source] = want
    retie(model)


def tie_broken(model: nn.Module, spec: TieSpec, t: Tie) -> str | None:
    """Why ``model`` does not hold the declared tie ``t`` of ``spec``, or ``None`` if it does."""
    if t.source in spec.parametrizations:
        source = _plist(model, t.source)
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
    if t.transform is None:
        if ref.param is src.param:
            return None
        comparable = "meta" not in (ref.param.device.type, src.param.device.type)
        if comparable and ref.param.shape == src.param.shape and torch.equal(ref.param.detach().cpu(), src.param.detach().cpu()):
            return "distinct Parameter objects (equal values now, but they will drift apart in training)"
        return "distinct Parameter objects with different values"
    held = is_tying_parametrization(ref.owner, ref.name) if ref.parametrized else None
    if held != t.transform:
        return f"{t.target!r} is a plain tensor, not a {t.transform} of the source"
    if ref.param is not src.param:
        return f"{t.target!r} reads the {t.transform} of a different Parameter"
    return None



@contextmanager
def plain_sources(model: nn.Module) -> Iterator[None]:
    """Within the block, each source parametrization the spec records (:func:`weight_norm`) is
    replaced by the plain tensor it computes and its group's readers by plain ties to it, for
    initialisers that write a module's weight directly (``reset_parameters`` cannot reach a
    parametrization's originals); on leaving, :func:`retie` puts the parametrizations back,
    computed from the values the block left."""
    spec = get_spec(model)
    for source in spec.parametrizations:
        for path in (*(t.target for t in spec.targets_of(source)), source):
            owner, name = _slot(model, path)
            if parametrize.is_parametrized(owner, name):
                parametrize.remove_parametrizations(owner, name, leave_parametrized=True)
    _apply(model, TieSpec(spec.ties))
    try:
        yield
    finally:
        retie(model)


def retie(model: nn.Module) -> None:
    """Re-apply every declared tie so each target again holds (or reads) its source's Parameter.

    Idempotent. Call it after anything that replaced Parameters; :func:`tying.materialize`,
    :func:`tying.load` and ``load_state_dict`` (through a hook the first tie installs) call it
    for you. The source's current values win.
    """
    model = unwrap(model)
    _apply(model, get_spec(model))


def _apply(model: nn.Module, spec: TieSpec) -> None:
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
            _check_compatible(src, ref, None)
            _set_identity(ref, src.param)
        else:
            held = _transform_of(ref)
            if held == t.transform and ref.param is src.param:
                continue
            if ref.parametrized and held != t.transform:
                raise TieError(f"cannot re-tie {t.target!r}: it carries a parametrization tying did not install")
            _check_compatible(src, ref, t.transform)
            _install_transform(ref, src.param, t.transform)


# --------------------------------------------------------------------------- state_dict hooks


def _load_state_dict_pre_hook(
    module: nn.Module,
    state_dict: dict[str, torch.Tensor],
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """Make ``load_state_dict`` tie-aware: refuse tied entries that disagree (instead of letting the
    last key silently win) and fill a target's missing entry from its source (or a source's from
    its target), so a deduplicated state dict loads strictly. Raises before anything is copied."""
    spec = get_spec(module)
    for t, src_key, tgt_key in [(t, prefix + s, prefix + k) for t in spec.ties for s, k in state_key_pairs(spec, t)]:
        logical_key = prefix + t.target
        src = state_dict.get(src_key)
        if src is None:
            # A deduplicated state dict may keep the target's entry instead (safetensors'
            # ``save_model`` keeps the alphabetically first name); it holds the source's data, in
            # the source's layout for a transposed tie (the parametrization's ``original``).
            if tgt_key in state_dict:
                state_dict[src_key] = state_dict[tgt_key]
            continue
        plain_source = t.source not in spec.parametrizations
        if plain_source and t.transform is not None and logical_key in state_dict and tgt_key not in state_dict:
            # A state dict from an untied model stores the target in its own layout.
            value = state_dict.pop(logical_key)
            if value.shape != apply_transform(t.transform, src).shape or not torch.equal(value, apply_transform(t.transform, src)):
                state_dict[logical_key] = value
                raise TieError(
                    f"state_dict holds different values for {logical_key!r} and the {t.transform} of {src_key!r}, "
                    f"which the model ties; load with tying.load(model, path, strict=False) to keep the source's values, "
                    f"or tying.untie(model, {t.target!r}) first"
                )
        tgt = state_dict.get(tgt_key)
        if tgt is None:
            state_dict[tgt_key] = src
        elif tgt is not src and (tgt.shape != src.shape or not torch.equal(tgt, src)):
            raise TieError(
                f"state_dict holds different values for {tgt_key!r} and {src_key!r}, which the model ties; "
                f"loading would keep whichever is copied last. Load with tying.load(model, path, strict=False) "
                f"to keep the source's values, or tying.untie(model, {t.target!r}) first"
            )


def _load_state_dict_post_hook(module: nn.Module, incompatible_keys: object) -> None:
    # ``load_state_dict(assign=True)`` registers one new Parameter per key: re-tie.
    retie(module)
