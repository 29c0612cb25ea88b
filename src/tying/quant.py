"""Quantizing a tied model (``pip install tying[quant]``: torchao) without losing or faking its ties.

torchao's ``quantize_`` replaces each ``nn.Linear``'s weight by a quantized tensor subclass one
module at a time, so a tied output layer becomes an int8 tensor while the embedding it was tied to
stays fp32: the tie is gone without a word. The policy here is explicit:

* ``ties="share"`` (default): a tie group whose members are all ``nn.Linear`` / ``nn.Embedding``
  weights tied plainly (no transform) is quantized **once**, and every member holds that one
  quantized tensor. This works because torchao's int8 weight-only layout quantizes per row of
  ``[V, d]``, which is both the embedding's lookup row and the head's output channel:
  ``F.embedding`` and ``F.linear`` both read it. The spec still holds (:func:`tying.verify`) and
  :func:`tying.save` stores the int8 matrix once.
* Where one quantized tensor cannot serve every member — a transposed (or otherwise transformed)
  tie, a member that is neither ``nn.Linear`` nor ``nn.Embedding`` — or with ``ties="untie"``,
  the group is untied **explicitly** (:func:`tying.untie`, the spec updated) with a warning that
  names the paths and the reason, and each member is quantized separately.

Everything else is passed to torchao's ``quantize_`` unchanged (its default: ``nn.Linear``).
:func:`tying.retie` never turns a quantized member back into a float one (it refuses, naming the
paths). torchao is imported only when these functions are called.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tying._paths import resolve, unwrap
from tying.checkpoint import read_checkpoint
from tying.checkpoint.wrapped import rebuild
from tying.core import retie, untie
from tying.errors import CheckpointError, TieError
from tying.graph import set_identity, slot
from tying.spec import get_spec
from tying.verification import require_intact

__all__ = ["QuantizeReport", "quantize_", "load"]

_LAYOUTS = (nn.Linear, nn.Embedding)


@dataclass
class QuantizeReport:
    """What :func:`quantize_` did to the model's tie groups."""

    #: Groups kept tied, each quantized once: ``[source, *targets]``.
    shared: list[list[str]] = field(default_factory=list)
    #: ``(target, source, reason)`` for each tie undone before quantizing.
    untied: list[tuple[str, str, str]] = field(default_factory=list)


def _default_config() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def _why_not_shared(model: nn.Module, source: str, ties: list[Any]) -> str | None:
    for t in ties:
        if t.transform is not None:
            return f"a {t.transform} tie cannot read one quantized tensor"
    for path in (source, *(t.target for t in ties)):
        owner, _ = slot(model, path)
        if not isinstance(owner, _LAYOUTS):
            return f"{path!r} belongs to a {type(owner).__name__}, not an nn.Linear or nn.Embedding"
    return None


def _quantize_tensor(weight: nn.Parameter, config: Any) -> nn.Parameter:
    """``weight`` ([out, in]) quantized by torchao as a bias-free ``nn.Linear``'s weight."""
    from torchao.quantization import quantize_ as ao_quantize

    holder = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        holder.weight.copy_(weight)
    ao_quantize(holder, config)
    return holder.weight  # type: ignore[return-value]  # torchao keeps it an nn.Parameter


def quantize_(model: nn.Module, config: Any = None, *, ties: str = "share") -> QuantizeReport:
    """Quantize ``model`` in place with torchao (``config``: a torchao config, default
    ``Int8WeightOnlyConfig()``) keeping its declared ties by the policy of this module.

    Raises:
        TieError: declared ties are broken (re-tie or untie first), a tie group is already
            quantized member by member, or ``ties`` is neither ``"share"`` nor ``"untie"``.
    """
    if ties not in ("share", "untie"):
        raise TieError(f"quantize_(ties={ties!r}): use 'share' (one quantized tensor per tie group) or 'untie'")
    model = unwrap(model)
    config = _default_config() if config is None else config
    require_intact(model, TieError, "cannot quantize the model", "call tying.retie(model) or tying.untie(model, path) first")
    report, done = QuantizeReport(), set[str]()
    for source, group in get_spec(model).groups().items():
        if is_traceable_wrapper_subclass(resolve(model, source).param):
            continue  # quantized already, as one group (verify said so)
        why = "ties='untie' asked for it" if ties == "untie" else _why_not_shared(model, source, group)
        members = [source, *(t.target for t in group)]
        if why is None:
            q = _quantize_tensor(resolve(model, source).param, config)
            for path in members:
                set_identity(resolve(model, path), q)
            report.shared.append(members)
        else:
            for t in group:
                untie(model, t.target)
                report.untied.append((t.target, source, why))
                warnings.warn(f"tying.quant: untied {t.target!r} from {source!r} ({why}); each is quantized separately", stacklevel=2)
            done.update(p for p in members if isinstance(slot(model, p)[0], nn.Embedding))
    _quantize_rest(model, config, done)
    return report


def _quantize_rest(model: nn.Module, config: Any, embeddings: set[str]) -> None:
    """torchao's default (every ``nn.Linear``) on what is not quantized yet, and the embeddings
    of untied groups (so an untied group's members are all quantized)."""
    from torchao.quantization import quantize_ as ao_quantize

    owners = {slot(model, p)[0] for p in embeddings}

    def pick(module: nn.Module, fqn: str) -> bool:
        weight = getattr(module, "weight", None)
        fresh = isinstance(weight, torch.Tensor) and not is_traceable_wrapper_subclass(weight)
        return fresh and (isinstance(module, nn.Linear) or module in owners)

    ao_quantize(model, config, filter_fn=pick)


def load(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Fill a model quantized like the one saved (by :func:`quantize_` with the same config) from
    ``path`` written by :func:`tying.save`: quantized entries are rebuilt from their stored inner
    tensors, the others copied, then the ties re-applied. All or nothing: every key and shape is
    checked before anything is written.

    Raises:
        CheckpointError: a key the model has and the file lacks (or the reverse), or a shape or
            tensor kind (quantized or not) that differs; the file and the keys are named.
    """
    model = unwrap(model)
    path = Path(path)
    info = read_checkpoint(path)
    state = model.state_dict(keep_vars=True)
    stored = {t.name for t in info.tensors} | set(info.wrapped)
    where = {k: info.aliases.get(k, k) for k in state}
    problems = [f"{k!r} is not in the file" for k, v in where.items() if v not in stored]
    problems += [
        f"{k!r} is {'quantized' if k in info.wrapped else 'plain'} in the file, not in the model"
        for k, v in where.items()
        if v in stored and (v in info.wrapped) != is_traceable_wrapper_subclass(state[k])
    ]
    if problems:
        raise CheckpointError(f"cannot load {str(path)!r} into {type(model).__name__}; nothing was changed: {'; '.join(problems)}")
    with safe_open(str(path), framework="pt", device="cpu") as f, torch.no_grad():
        built = {k: rebuild(k, e, f.get_tensor) for k, e in info.wrapped.items()}  # type: ignore[arg-type]
        for key, name in where.items():
            if name in built:
                param = state[key]
                set_identity(resolve(model, key), nn.Parameter(built[name], requires_grad=param.requires_grad))
            else:
                state[key].copy_(f.get_tensor(name))
    retie(model)
