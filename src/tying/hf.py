"""Hugging Face transformers support (``pip install tying[hf]``): read the ties a transformers
model *declares* and record them as the model's tie spec; read a ``save_pretrained`` folder's
declared ties against what its safetensors files hold.

transformers keeps tie state in several places that can disagree: config flags
(``tie_word_embeddings``, possibly per sub-config), the class attribute ``_tied_weights_keys``,
the live object graph (``lm_head.weight is embed_tokens.weight``) and the checkpoint's key set
(``save_pretrained`` drops tied targets). :func:`declare_ties` turns the first two into a
:class:`tying.TieSpec`, so :func:`tying.verify` compares them with the third and
:func:`tying.save` / :func:`tying.load` / :func:`tying.materialize` keep them.
:func:`read_pretrained` (and ``tying inspect FOLDER``) compares them with the fourth.

``_tied_weights_keys`` changed form in transformers 5: it is a ``{target: source}`` dict (keys may
be regular expressions or module names, expanded by ``get_expanded_tied_weights_keys``) and is
empty unless the config's ``tie_word_embeddings`` is true. Before 5 it was a list of *target*
patterns without sources; the ties themselves were made by code (``tie_weights`` and modules'
``_tie_weights``). With transformers < 5 the sources are therefore taken from the config (output
embeddings read the input embeddings when ``tie_word_embeddings`` is true) and, for the other
listed targets, from the Parameter object the model holds.

transformers is imported lazily: ``import tying`` and ``import tying.hf`` work without it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from tying.checkpoint import CheckpointInfo, read_checkpoint
from tying.checks import check_tie
from tying.core import declare
from tying.errors import CheckpointError
from tying.integrations import register_initialiser, register_tie_reader
from tying.spec import Tie, get_spec

__all__ = ["declared_ties", "declare_ties", "read_pretrained", "PretrainedInfo", "DeclaredTie"]


# --------------------------------------------------------------------------- live models


def declared_ties(model: nn.Module) -> dict[str, str]:
    """The ties ``model`` (a transformers ``PreTrainedModel``) declares, as ``{target: source}``
    parameter paths, each source resolved to its group's root (no chains), whether or not the
    model currently holds them.

    transformers >= 5: ``model.get_expanded_tied_weights_keys(all_submodels=True)``, which re-reads
    every sub-model's config (an untied config declares nothing). transformers < 5: see the
    module docstring. Raises ``TypeError`` for a model without a transformers ``config``.
    """
    if not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} is not a transformers model (it has no config); declare its ties with tying.tie")
    expand = getattr(model, "get_expanded_tied_weights_keys", None)
    mapping = expand(all_submodels=True) if callable(expand) else _list_form_ties(model)
    return {target: _root_of(mapping, source) for target, source in mapping.items()}


def _root_of(mapping: dict[str, str], source: str) -> str:
    seen = set()
    while source in mapping and source not in seen:  # e.g. Marian: lm_head -> decoder embeddings -> shared
        seen.add(source)
        source = mapping[source]
    return source


def _list_form_ties(model: nn.Module) -> dict[str, str]:
    """transformers < 5: ``_tied_weights_keys`` lists target patterns (on any sub-model) only."""
    out: dict[str, str] = {}
    hf_model: Any = model  # a transformers PreTrainedModel (its methods are not on nn.Module's type)
    config = hf_model.config
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    out_emb, in_emb = hf_model.get_output_embeddings(), hf_model.get_input_embeddings()
    if getattr(text, "tie_word_embeddings", True) and out_emb is not None and in_emb is not None:
        names = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}
        out[_join(names[id(out_emb)], "weight")] = _join(names[id(in_emb)], "weight")
    patterns = [
        _join(prefix, key)
        for prefix, module in model.named_modules()
        for key in (getattr(module, "_tied_weights_keys", None) or [])
    ]
    params = list(model.named_parameters(remove_duplicate=False))
    targets = {n for n, _ in params if any(re.search(p, n) for p in patterns)}
    for name, p in params:
        if name in targets and name not in out:
            source = next((s for s, q in params if q is p and s not in targets), None)
            if source is not None:
                out[name] = source
    return out


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def declare_ties(model: nn.Module) -> list[Tie]:
    """Record the ties ``model`` declares (:func:`declared_ties`) in its tie spec and return the
    ones added (re-declaring is a no-op).

    Nothing is applied: a model built or loaded by transformers already holds its ties, and one
    that does not (``to_empty``, ``from_pretrained`` of a file whose tied copies differ) is what
    :func:`tying.verify` then reports; :func:`tying.retie` applies the declaration (the source's
    values win). All ties are validated (paths, shapes, dtypes, devices, conflicts with ties
    already declared) before any is recorded; raises :class:`tying.TieError` otherwise.
    """
    work = get_spec(model)
    added: list[Tie] = []
    for target, source in declared_ties(model).items():
        t = check_tie(model, work, source, target)
        if t is not None:
            added.append(t)
            work.ties.append(t)
    if added:
        declare(model, added, apply=False)
    return added


# --------------------------------------------------------------------------- save_pretrained folders


@dataclass(frozen=True)
class DeclaredTie:
    """A declared tie checked against a checkpoint folder's files.

    ``status`` is one of ``"dropped"`` (the target is not stored; loaders fill it from its group's
    stored member, usually the source), ``"equal copies"`` (both stored, equal values),
    ``"different copies"`` (both stored with different values: the declaration is wrong for this
    file; transformers 5 then leaves them untied and warns, 4.x tied them and lost one copy),
    ``"source dropped"`` (the target is stored, the source is not: loaders fill the source from
    it) or ``"none stored"`` (no member of the group is stored: the weight would be freshly
    initialised).
    """

    target: str
    source: str
    status: str


@dataclass
class PretrainedInfo:
    """A transformers checkpoint folder, read without loading weights (see :func:`read_pretrained`)."""

    folder: Path
    #: ``config.json``'s ``architectures[0]`` and ``model_type``.
    architecture: str | None
    model_type: str | None
    #: Every ``tie_*`` entry of ``config.json``, nested sub-config entries as ``text_config.tie_...``.
    config_flags: dict[str, object]
    #: The architecture class's ``_tied_weights_keys`` as written (dict in transformers >= 5, list before).
    class_keys: object
    #: Declared ties (config + classes, sub-models included) against the files; empty if unresolved.
    ties: list[DeclaredTie]
    #: Model ``state_dict`` keys that no file stores and no declared tie fills.
    missing: list[str]
    #: Stored keys the model has no place for.
    unexpected: list[str]
    files: list[CheckpointInfo]
    #: Why the architecture class was not resolved (then ``ties``, ``missing`` and ``unexpected`` are empty).
    unresolved: str | None = None
    transformers_version: str | None = None


_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"


def _weight_files(folder: Path) -> tuple[dict[str, str], list[CheckpointInfo]]:
    """``{tensor name: file name}`` and the headers of the folder's safetensors weight files."""
    index = folder / _INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{str(index)!r} is not a valid safetensors index: {exc}") from None
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and os.path.basename(v) == v for k, v in weight_map.items()
        ):
            raise CheckpointError(f"{str(index)!r}: 'weight_map' must map tensor names to file names in the folder")
    elif (folder / _SINGLE).is_file():
        single = read_checkpoint(folder / _SINGLE)
        return {t.name: _SINGLE for t in single.tensors}, [single]
    else:
        found = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        hint = f"; it holds {found} (pickle: tying never unpickles)" if found else ""
        raise CheckpointError(f"{str(folder)!r} has no {_SINGLE} or {_INDEX}{hint}")
    files = [read_checkpoint(folder / name) for name in dict.fromkeys(weight_map.values())]
    stored = {(info.path.name, t.name) for info in files for t in info.tensors}
    absent = [k for k, name in weight_map.items() if (name, k) not in stored]
    if absent:
        raise CheckpointError(f"{str(index)!r} maps {absent[:3]} to files that do not hold them")
    return weight_map, files


def _tie_flags(config: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_tie_flags(value, f"{prefix}{key}."))
        elif key.startswith("tie_"):
            out[prefix + key] = value
    return out


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    # Building a skeleton from a small or old config logs config warnings that are noise here.
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _skeleton(config: dict[str, object], architecture: str | None) -> tuple[nn.Module | None, object, str | None, str | None]:
    """(model on the meta device, class ``_tied_weights_keys``, why unresolved, transformers version)."""
    try:
        import transformers
    except ImportError:
        return None, None, "transformers is not installed (pip install tying[hf])", None
    version = transformers.__version__
    cls = getattr(transformers, architecture, None) if architecture else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        why = f"transformers {version} has no model class {architecture!r}" if architecture else "config.json names no architecture"
        return None, None, why, version
    try:
        with _quiet_transformers(), torch.device("meta"):  # the module tree only: no weight memory, no init
            model = cls(cls.config_class.from_dict(config))  # type: ignore[union-attr]
    except Exception as exc:  # whatever the class's own checks raise on this config.json: report it
        return None, cls._tied_weights_keys, f"cannot build {architecture} from config.json: {exc}", version
    return model, cls._tied_weights_keys, None, version


def read_pretrained(folder: str | os.PathLike[str]) -> PretrainedInfo:
    """Read a ``save_pretrained`` folder (``config.json`` plus ``model.safetensors`` or a sharded
    ``model.safetensors.index.json``) and check the ties it declares against the files.

    Reads the config flags and the files' headers; builds the architecture class (resolved by name
    from the installed transformers, never downloaded, never remote code) on the meta device, which
    allocates no weight memory, to expand the declared ties and list the model's keys. Tensor data
    is read only to compare the two stored copies of a declared tie. Raises
    :class:`tying.CheckpointError` for a folder without ``config.json`` or safetensors weights.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        found = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
        hint = (
            f"; it holds {', '.join(found[:5])}{', ...' if len(found) > 5 else ''}: inspect a file itself, "
            f"e.g. tying inspect {str(folder / found[0])!r}"
            if found
            else ""
        )
        raise CheckpointError(f"{str(folder)!r} has no config.json, so it is no transformers save_pretrained folder{hint}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise CheckpointError(f"{str(config_path)!r} is not valid JSON: {exc}") from None
    weight_map, files = _weight_files(folder)
    architectures = config.get("architectures")
    first = architectures[0] if isinstance(architectures, list) and architectures else None
    architecture = first if isinstance(first, str) else None
    model, class_keys, unresolved, version = _skeleton(config, architecture)
    info = PretrainedInfo(
        folder, architecture, config.get("model_type"), _tie_flags(config), class_keys, [], [], [], files, unresolved, version
    )
    if model is None:
        return info
    ties = declared_ties(model)
    groups: dict[str, set[str]] = {}
    for target, source in ties.items():
        groups.setdefault(source, {source}).add(target)
    # A group with any member stored is filled from it on load (transformers' tie_weights does the same).
    filled = {k for members in groups.values() if members & weight_map.keys() for k in members}
    info.ties = [DeclaredTie(t, s, _status(folder, weight_map, t, s, s in filled)) for t, s in ties.items()]
    keys = model.state_dict().keys()
    info.missing = [k for k in keys if k not in weight_map and k not in filled]
    info.unexpected = [k for k in weight_map if k not in keys]
    return info


def _status(folder: Path, weight_map: dict[str, str], target: str, source: str, filled: bool) -> str:
    if target not in weight_map:
        return "dropped" if filled else "none stored"
    if source not in weight_map:
        return "source dropped"
    same = torch.equal(_tensor(folder, weight_map, target), _tensor(folder, weight_map, source))
    return "equal copies" if same else "different copies"


def _tensor(folder: Path, weight_map: dict[str, str], name: str) -> torch.Tensor:
    with safe_open(str(folder / weight_map[name]), framework="pt", device="cpu") as f:
        return f.get_tensor(name)


# --------------------------------------------------------------------------- initialisation


def _own_initialiser(model: nn.Module) -> Callable[[], None] | None:
    """The whole-model initialisation of a transformers >= 5 model (``initialize_weights``: each
    module's ``_init_weights``, children before parents, sub-models with their own, and the
    non-persistent buffers such as rotary ``inv_freq`` and ``position_ids`` re-computed), or
    ``None`` for any other model. Used by :func:`tying.materialize` with ``init=True``
    (registered with :mod:`tying.integrations`)."""
    transformers = sys.modules.get("transformers")
    if transformers is None or not isinstance(model, transformers.PreTrainedModel):
        return None
    initialize = getattr(model, "initialize_weights", None)
    return initialize if callable(initialize) else None


register_initialiser(_own_initialiser)


def _class_ties(model: nn.Module) -> dict[str, str]:
    """What a transformers model's class and config tie (``{}`` for any other module)."""
    if not hasattr(model, "config") or not hasattr(model, "_tied_weights_keys"):
        return {}
    return declared_ties(model)


register_tie_reader(_class_ties, "tying.hf.declare_ties(model)")
