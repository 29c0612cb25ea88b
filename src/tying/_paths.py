"""Resolving dotted parameter paths to (owner module, attribute) with errors that say what is
there instead and suggest the closest names."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from typing import cast

from torch import nn
from torch.nn.utils import parametrize

from tying.errors import TieError

# ``a.b.parametrizations.weight.original`` (one tensor) or ``...original0`` (several).
PARAMETRIZED_KEY = re.compile(r"^(?:(?P<owner>.+)\.)?parametrizations\.(?P<name>[^.]+)\.original(?P<index>\d*)$")


@dataclass
class ParamRef:
    """A parameter path resolved inside a model.

    ``param`` is the registered ``nn.Parameter`` for a plain parameter, or the parametrization's
    ``original`` for a parametrized tensor (then ``parametrized`` is true).
    """

    path: str
    owner: nn.Module
    name: str
    param: nn.Parameter
    parametrized: bool = False


def parametrization_list(module: nn.Module, name: str) -> parametrize.ParametrizationList:
    """The parametrizations computing ``module.<name>`` (``module`` must be parametrized there)."""
    return cast(parametrize.ParametrizationList, cast(nn.ModuleDict, module.parametrizations)[name])


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside ``torch.compile``, ``DistributedDataParallel`` and ``DataParallel``
    wrappers (nested ones too). A wrapper holds the very same Parameters but prefixes every path
    (``_orig_mod.``, ``module.``) and not the tie spec, so tying's functions act on what it wraps:
    a wrapped model is verified, summarised and saved under the model's own paths."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
            continue
        # Only ``torch.compile`` imports dynamo: when it is not loaded, nothing is compiled.
        eval_frame = sys.modules.get("torch._dynamo.eval_frame")
        if eval_frame is not None and isinstance(model, eval_frame.OptimizedModule):
            model = model._orig_mod
            continue
        return model


def adapted_path(model: nn.Module, path: str) -> str:
    """``path`` as ``model`` holds it now: where the parameter's module has been wrapped by an
    adapter layer that keeps the original module as ``base_layer`` (peft's LoRA layers, whose
    ``weight`` merely forwards to ``base_layer.weight``), the path through the base layers
    (``lm_head.weight`` -> ``lm_head.base_layer.weight``). Any other path is returned unchanged."""
    owner_path, _, name = path.rpartition(".")
    try:
        owner = model.get_submodule(owner_path) if owner_path else model
    except AttributeError:
        return path
    hops = ""
    while name not in owner._parameters and not parametrize.is_parametrized(owner, name):
        base = owner._modules.get("base_layer")
        if base is None:
            return path
        owner, hops = base, hops + ".base_layer"
    if not hops:
        return path
    return f"{owner_path}{hops}.{name}" if owner_path else f"{hops[1:]}.{name}"


def parametrized_match(key: str, model: nn.Module) -> re.Match[str] | None:
    """The :data:`PARAMETRIZED_KEY` match of ``key`` when ``model`` really holds a parametrization
    there; ``None`` for a key that merely reads like one (a ``torch.export``-ed module keeps the
    name ``dec.parametrizations.weight.original`` for a plain parameter of plain modules)."""
    match = PARAMETRIZED_KEY.match(key)
    if match is None:
        return None
    try:
        owner = model.get_submodule(match.group("owner") or "")
    except AttributeError:
        return None
    return match if parametrize.is_parametrized(owner, match.group("name")) else None


def logical_path(key: str, model: nn.Module) -> str:
    """The path a user writes for a ``named_parameters``/``state_dict`` key: a single-tensor
    parametrization's ``m.parametrizations.weight.original`` reads as ``m.weight``."""
    match = parametrized_match(key, model)
    if match is None or match.group("index"):
        return key
    owner = match.group("owner")
    return f"{owner}.{match.group('name')}" if owner else match.group("name")


def parametrized_key(path: str) -> str:
    """The ``state_dict`` key of the single-tensor parametrization original behind ``path``."""
    owner, _, name = path.rpartition(".")
    return f"{owner}.parametrizations.{name}.original" if owner else f"parametrizations.{name}.original"


def parameter_paths(model: nn.Module) -> list[str]:
    """Every path :func:`resolve` accepts, in ``named_parameters`` order."""
    return list(dict.fromkeys(logical_path(k, model) for k, _ in model.named_parameters(remove_duplicate=False)))


def _unknown(model: nn.Module, path: str, detail: str) -> TieError:
    # Paths inside a parametrization of several tensors are refused by ``resolve``: never suggest one.
    names = [p for p in parameter_paths(model) if ".parametrizations." not in f".{p}"]
    close = difflib.get_close_matches(path, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return TieError(f"no parameter {path!r} in {type(model).__name__}: {detail}{hint}")


@dataclass(frozen=True)
class Registration:
    """One slot ``module._parameters[name]`` holding ``param``, and every ``state_dict`` key that
    reaches it (several when the module is registered under several paths, e.g. ``nn.Sequential(l, l)``
    or a shared submodule). Initialising, moving or resizing a Parameter acts on its slots, once each."""

    module: nn.Module
    name: str
    param: nn.Parameter
    keys: tuple[str, ...]


def registrations(model: nn.Module) -> list[Registration]:
    """Every Parameter slot of ``model`` once, in ``named_parameters`` order, with the keys reaching it.
    A parametrization's ``original`` is a slot of its ``ParametrizationList``."""
    slots: dict[tuple[int, str], tuple[nn.Module, str, nn.Parameter, list[str]]] = {}
    for mod_path, module in model.named_modules(remove_duplicate=False):
        for name, p in module._parameters.items():
            if p is not None:
                key = f"{mod_path}.{name}" if mod_path else name
                slots.setdefault((id(module), name), (module, name, p, []))[3].append(key)
    order = {k: i for i, (k, _) in enumerate(model.named_parameters(remove_duplicate=False))}
    out = [Registration(m, n, p, tuple(keys)) for m, n, p, keys in slots.values()]
    return sorted(out, key=lambda r: order.get(r.keys[0], len(order)))


def slot_aliases(model: nn.Module, path: str) -> list[str]:
    """The other parameter paths that name the very slot ``path`` names (its module is registered
    under several paths), in ``named_parameters`` order."""
    ref = resolve(model, path)
    owner = parametrization_list(ref.owner, ref.name) if ref.parametrized else ref.owner
    name = "original" if ref.parametrized else ref.name
    for r in registrations(model):
        if r.module is owner and r.name == name:
            return [p for p in dict.fromkeys(logical_path(k, model) for k in r.keys) if p != path]
    return []


def _inside_parametrization(model: nn.Module, path: str) -> bool:
    """Whether ``path`` names a tensor inside a real parametrization (not a plain parameter of an
    exported module that kept the name)."""
    if parametrized_match(path, model) is not None:
        return True
    owner_path = path.rpartition(".")[0]
    try:
        owner = model.get_submodule(owner_path) if owner_path else model
    except AttributeError:
        return True
    return isinstance(owner, parametrize.ParametrizationList) or not isinstance(owner._parameters.get(path.rpartition(".")[2]), nn.Parameter)


def resolve(model: nn.Module, path: str) -> ParamRef:
    """Resolve ``path`` (dotted, as in ``named_parameters``; ModuleList indices included) to the
    parameter it names, or raise :class:`TieError` saying what is there instead."""
    if not isinstance(path, str) or not path:
        raise TieError(f"parameter path must be a non-empty string, got {path!r}")
    if ".parametrizations." in f".{path}" and _inside_parametrization(model, path):
        raise TieError(
            f"{path!r} is inside a parametrization; name the parametrized tensor "
            f"{logical_path(path, model)!r} instead (tying manages the parametrization it installs), "
            "or remove the parametrization with torch.nn.utils.parametrize.remove_parametrizations"
        )
    owner_path, _, name = path.rpartition(".")
    try:
        owner = model.get_submodule(owner_path) if owner_path else model
    except AttributeError:
        raise _unknown(model, path, f"it has no submodule {owner_path!r}") from None
    if name in owner._parameters:
        param = owner._parameters[name]
        if param is None:
            raise TieError(f"{path!r} is None in {type(owner).__name__} (the module was built without it)")
        return ParamRef(path, owner, name, param)
    if parametrize.is_parametrized(owner, name):
        plist = parametrization_list(owner, name)
        if not plist.is_tensor:
            raise TieError(
                f"{path!r} is parametrized from several tensors ({type(plist[0]).__name__}); it cannot be tied as it is: "
                "declare the ties on the plain tensor first, then normalize the group with tying.weight_norm(model, path)"
            )
        return ParamRef(path, owner, name, cast(nn.Parameter, plist.original), parametrized=True)
    if name in owner._buffers:
        raise TieError(f"{path!r} is a buffer, not a parameter; only parameters can be tied (register it with nn.Parameter)")
    if name in owner._modules:
        sub = owner._modules[name]
        hint = ""
        if sub is not None:
            inner = [f"{path}.{n}" for n, _ in sub.named_parameters(recurse=False)]
            hint = f"; did you mean {' or '.join(repr(c) for c in inner)}?" if inner else ""
        raise TieError(f"{path!r} is a module ({type(sub).__name__}), not a parameter{hint}")
    if hasattr(owner, name):
        raise TieError(
            f"{path!r} is a {type(getattr(owner, name)).__name__} attribute of {type(owner).__name__}, "
            "not a registered nn.Parameter"
        )
    raise _unknown(model, path, f"{type(owner).__name__} at {owner_path or '<root>'!r} has no attribute {name!r}")
