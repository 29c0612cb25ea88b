"""Checking a tie declaration against a model and its spec, changing nothing: the one check behind
:func:`tying.tie`, :func:`tying.tie_transposed`, :func:`tying.load` and :func:`tying.hf.declare_ties`."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tying._paths import ParamRef, parametrization_list, resolve
from tying._text import plural
from tying.errors import TieError
from tying.spec import Tie, TieSpec
from tying.transforms import TRANSFORMS, Params, TieTransform, build


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def tensor_kind(t: torch.Tensor) -> str:
    """``"a plain tensor"`` (or Parameter), else ``"an <class>"`` for a tensor subclass that wraps
    other tensors (torchao's quantized ``Int8Tensor``, ``DTensor``)."""
    if not is_traceable_wrapper_subclass(t):
        return "a plain tensor"
    name = type(t).__name__
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"


def kinds_differ(s: torch.Tensor, t: torch.Tensor) -> str | None:
    """Why ``s`` and ``t`` cannot be one tensor because one is a wrapper subclass (a quantized
    tensor) and the other is not, or another one; ``None`` when they are of one kind."""
    ks, kt = tensor_kind(s), tensor_kind(t)
    return None if ks == kt else f"one holds {kt}, the other {ks}"


def _transform_hint(s: torch.Tensor, t: torch.Tensor) -> str:
    """A hint naming the call for a transformed tie when the target has the shape a transform reads."""
    for cls in TRANSFORMS.values():
        if s.dim() >= cls.min_dims and _shape(t) == list(cls.target_shape(s.shape)):
            return f"; use {cls.call} for a {cls.adjective} tie"
    return ""


def check_compatible(src: ParamRef, tgt: ParamRef, transform: TieTransform | None) -> None:
    """Raise :class:`TieError` unless ``tgt`` can read ``src`` (through ``transform``): shapes as
    the transform reads them, dtypes and devices."""
    s, t = src.param, tgt.param
    differ = kinds_differ(s, t)
    if differ is not None:
        # Holding the source's object would change what the target computes (e.g. an int8 head
        # silently dequantized by re-tying it to its fp32 embedding).
        raise TieError(
            f"cannot tie {tgt.path!r} ({tensor_kind(t)}) to {src.path!r} ({tensor_kind(s)}): one object "
            "for both would silently change what the other computes; quantize the group once with "
            f"tying.quant.quantize_(model), or tying.untie(model, {tgt.path!r}) to keep them apart"
        )
    if transform is not None:
        cls = type(transform)
        if s.dim() < cls.min_dims:
            raise TieError(
                f"{cls.call.removeprefix('tying.')} needs a source with at least {plural(cls.min_dims, 'dimension')}; "
                f"{src.path!r} has shape {_shape(s)}"
            )
        reason = transform.mismatch(s.shape)
        if reason is not None:
            raise TieError(f"cannot tie {tgt.path!r} to the {cls.name} of {src.path!r} (shape {_shape(s)}): {reason}")
        want = list(cls.target_shape(s.shape))
        # A parametrized target's ``original`` is stored in the source layout already.
        have = _shape(t) if not tgt.parametrized else list(cls.target_shape(t.shape))
        if have != want:
            raise TieError(
                f"cannot tie {tgt.path!r} (shape {have}) to the {cls.name} of {src.path!r} (shape {_shape(s)}, "
                f"{cls.adjective} {want}): shapes differ; the target must be the {cls.name} of the source"
            )
    elif _shape(s) != _shape(t):
        raise TieError(
            f"cannot tie {tgt.path!r} (shape {_shape(t)}) to {src.path!r} (shape {_shape(s)}): shapes differ{_transform_hint(s, t)}"
        )
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


def check_tie(
    model: nn.Module, spec: TieSpec, source: str, target: str, transform: str | None = None, params: Params = ()
) -> Tie | None:
    """Validate the declaration ``source -[transform]-> target`` against ``model`` and the ties
    already in ``spec``: returns the :class:`Tie` to record (its source resolved to the root of its
    group, so ties never chain), or ``None`` when that tie is declared already. Nothing changes.

    Raises :class:`TieError` naming the paths: unknown or non-parameter paths, a target tied
    elsewhere or heading a group, a path inside a parametrization, shapes (as the transform reads
    them), dtypes or devices that differ.
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
    wanted = Tie(root, target, transform, params)
    if _check_target(spec, wanted):
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
    check_compatible(src, ref, None if transform is None else build(transform, params))
    return wanted


def _check_target(spec: TieSpec, wanted: Tie) -> bool:
    """Validate ``wanted.target`` against the spec; returns True when the same tie is already declared."""
    existing = spec.source_of(wanted.target)
    if existing is not None:
        if existing == wanted:
            return True
        how = "" if existing.transform is None else f" ({existing.transform})"
        raise TieError(
            f"{wanted.target!r} is already tied to {existing.source!r}{how}; "
            f"call tying.untie(model, {wanted.target!r}) first to tie it to {wanted.source!r}"
        )
    readers = spec.targets_of(wanted.target)
    if readers:
        raise TieError(
            f"{wanted.target!r} is the source of a tie group ({', '.join(repr(t.target) for t in readers)}); "
            f"tie the other way round, e.g. tying.tie(model, {wanted.target!r}, ...), or untie its group first"
        )
    return False
