r"""Transforms a tie may apply: what a target reads of its source.

A tie ``source -> target`` with ``transform=None`` makes the target *be* the source Parameter
(:class:`Identity`). A transformed tie makes the target read ``f(source)`` through a
parametrization whose ``original`` is the source Parameter itself, so the gradient of every use
reaches one leaf. Each transform is one :class:`TieTransform` subclass, registered by name
(:func:`register`): its forward map and inverse, its shape rule, the parameters a checkpoint
records for it, and the words messages use for it. The spec, the tie checks, discovery,
checkpoints and resizing look transforms up here and nowhere else, so a new transform is one
class in this module (declared with :func:`tying.core.tie_transformed`, or a call of its own).
Today there are two: ``"transpose"`` (:math:`W_t = W_s^\top`, tied autoencoders) and
``"reflect"`` (:math:`W_t = W_s \operatorname{diag}(s)`, fixed signs :math:`s_j = \pm 1`).

Weight normalization of a tie group (:data:`SOURCE_PARAMETRIZATIONS`) is not a transform: it
computes the *source* of a group from several originals, and every member reads it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm, weight_norm

from tying._paths import parametrization_list

__all__ = ["Reflect", "Transpose"]

#: A transform's parameters as a tie records them: ``(name, value)`` pairs sorted by name, JSON
#: values with lists as tuples, so a :class:`tying.Tie` stays hashable (:func:`freeze`).
Params = tuple[tuple[str, Any], ...]


class TieTransform(nn.Module):
    """One transform a tie may apply: the target reads ``forward(source)``.

    A subclass sets the class attributes, implements :meth:`forward` and :meth:`right_inverse`
    (assigning ``target.weight = w`` writes ``right_inverse(w)`` into the shared source), and,
    when it changes the shape, the shape rule (:meth:`target_shape`, :meth:`read_dim`,
    :meth:`source_dim`). A transform with parameters keeps them as plain Python values (never
    buffers or Parameters: the target's ``state_dict`` holds the source's ``original`` only),
    returns them from :meth:`params` and is rebuilt by :meth:`from_params`; the spec and
    checkpoint headers record them under ``"params"``.
    """

    #: Name in the spec (``Tie.transform``) and in checkpoint headers; ``None`` for :class:`Identity`.
    name: ClassVar[str | None] = None
    #: How a target reads its source, in messages (``"transposed"``).
    adjective: ClassVar[str] = ""
    #: The call that declares such a tie, in messages (``"tying.tie_transposed"``).
    call: ClassVar[str] = ""
    #: The fewest dimensions a source must have.
    min_dims: ClassVar[int] = 0

    def params(self) -> dict[str, Any]:
        """The JSON-serialisable parameters the spec records (``{}`` for none)."""
        return {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TieTransform:
        """The transform with ``params`` (as :meth:`params` gave them, read back from JSON);
        raises ``ValueError`` for parameters it cannot take."""
        if params:
            raise ValueError(f"transform {cls.name!r} takes no parameters, got {sorted(params)}")
        return cls()

    def label(self) -> str:
        """The transform with a short account of its parameters, for displays (``tying inspect``)."""
        return str(self.name)

    def mismatch(self, shape: Sequence[int]) -> str | None:
        """Why this transform (with its parameters) cannot read a source of ``shape``, else ``None``."""
        return None

    @classmethod
    def target_shape(cls, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape a target reads of a source of ``shape``."""
        return tuple(shape)

    @classmethod
    def read_dim(cls, dim: int) -> int:
        """The dimension of the target that (non-negative) dimension ``dim`` of the source becomes."""
        return dim

    @classmethod
    def source_dim(cls, dim: int) -> int:
        """The dimension of the source that (non-negative) dimension ``dim`` of the target reads."""
        return dim

    @classmethod
    def resizable(cls, dim: int, ndim: int) -> bool:
        """Whether the tie still holds after dimension ``dim`` of an ``ndim``-dimensional source
        changes size (:func:`tying.resize_vocab`)."""
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def right_inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Identity(TieTransform):
    """``transform=None``: the target holds the source Parameter itself (never a parametrization)."""


class Transpose(TieTransform):
    r"""Parametrization ``W_target = W_source^T`` (dimensions 0 and 1 swapped).

    Why a parametrization rather than a module holding a reference to the source: it works on any
    existing module (``nn.Linear``, ``nn.ConvTranspose2d``, custom layers) without replacing it or
    changing its ``forward``; the transposed weight is a *view* recomputed on each access, so the
    gradient flows into the single source leaf; and the parametrization's ``original`` is the
    source Parameter itself, so the tie is visible to ``named_parameters``, optimizers,
    ``state_dict`` and :func:`tying.find_ties` as an ordinary shared Parameter.
    Swapping dims 0 and 1 covers tied autoencoders (``Linear(d, h)`` / ``Linear(h, d)``) and
    convolution / transposed-convolution pairs (``[out, in, k, k]`` vs ``[in, out, k, k]``).
    """

    name = "transpose"
    adjective = "transposed"
    call = "tying.tie_transposed"
    min_dims = 2

    @classmethod
    def target_shape(cls, shape: Sequence[int]) -> tuple[int, ...]:
        return (shape[1], shape[0], *shape[2:])

    @classmethod
    def read_dim(cls, dim: int) -> int:
        return {0: 1, 1: 0}.get(dim, dim)

    @classmethod
    def source_dim(cls, dim: int) -> int:
        return cls.read_dim(dim)  # swapping is its own inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1)

    def right_inverse(self, x: torch.Tensor) -> torch.Tensor:
        # Assigning ``module.weight = w`` on a target writes ``w^T`` into the shared source.
        return x.transpose(0, 1)


class Reflect(TieTransform):
    r"""Parametrization ``W_target = W_source * signs``: the source with a fixed sign per column,
    :math:`C = W \operatorname{diag}(s)`, :math:`s_j \in \{+1, -1\}` (``signs`` broadcast over the
    last dimension).

    Assylbekov & Takhanov (JAIR 2019, arXiv 1902.09859) tie skip-gram's context vectors to its
    word vectors this way, with half the signs negative (:meth:`half_negative`; not ``half``,
    which ``nn.Module`` keeps for casting to float16). A reflection is its own inverse, so
    assigning ``target.weight = c`` writes ``c * signs`` into the source. The shape is kept; the
    vocabulary (any dimension but the last) may be resized, the last dimension may not (one sign
    per column). The signs are a tuple of Python ints, recorded in the spec and in
    checkpoint headers as ``{"signs": [...]}``, never a tensor of the module.

    Raises ``ValueError`` for an empty sign vector or an entry other than the int ``1`` or ``-1``
    (naming its index and value).
    """

    name = "reflect"
    adjective = "reflected"
    call = "tying.tie_reflected"
    min_dims = 1

    def __init__(self, signs: Sequence[int] | torch.Tensor) -> None:
        super().__init__()
        self.signs = _checked_signs(signs)

    @classmethod
    def half_negative(cls, dim: int, seed: int = 0) -> Reflect:
        """``dim`` signs of which exactly ``dim // 2`` are ``-1``, at the positions of the first
        ``dim // 2`` entries of ``torch.randperm(dim)`` drawn from a ``torch.Generator`` seeded
        with ``seed``. Checkpoints record the signs themselves, so loading never redraws them."""
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Reflect.half_negative needs a positive int dimension, got {dim!r}")
        negative = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))[: dim // 2]
        signs = torch.ones(dim, dtype=torch.int64)
        signs[negative] = -1
        return cls(signs)

    def params(self) -> dict[str, Any]:
        return {"signs": list(self.signs)}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Reflect:
        if set(params) != {"signs"}:
            raise ValueError(f"transform 'reflect' takes one parameter, 'signs'; got {sorted(params)}")
        signs = params["signs"]
        if not isinstance(signs, (list, tuple)):
            raise ValueError(f"'signs' must be a list of 1 and -1, got {type(signs).__name__}")
        return cls(signs)

    def label(self) -> str:
        return f"reflect ({self.signs.count(-1)} of {len(self.signs)} signs -1)"

    def extra_repr(self) -> str:
        return f"{len(self.signs)} signs, {self.signs.count(-1)} of them -1"

    def mismatch(self, shape: Sequence[int]) -> str | None:
        if len(shape) and shape[-1] == len(self.signs):
            return None
        last = shape[-1] if len(shape) else "(none)"
        return f"{len(self.signs)} signs for a last dimension of length {last}; there must be one sign per column"

    @classmethod
    def resizable(cls, dim: int, ndim: int) -> bool:
        return dim != ndim - 1  # one sign per column: the number of columns is fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Multiplying by +-1 is exact in every floating dtype: the target is bit-for-bit W * s.
        return x * torch.tensor(self.signs, dtype=x.dtype, device=x.device)

    def right_inverse(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)  # (W s) s = W: a reflection is its own inverse


def _checked_signs(signs: Sequence[int] | torch.Tensor) -> tuple[int, ...]:
    """``signs`` as a tuple of ints, each ``1`` or ``-1``; ``ValueError`` naming the first other entry."""
    if isinstance(signs, torch.Tensor) and signs.dim() != 1:
        raise ValueError(f"signs must be one-dimensional, got a tensor of shape {list(signs.shape)}")
    values = signs.tolist() if isinstance(signs, torch.Tensor) else list(signs)
    if not values:
        raise ValueError("a reflection needs at least one sign; got an empty sign vector")
    for i, s in enumerate(values):
        # bools and floats are refused: a sign is the int 1 or -1 (as the checkpoint header writes it).
        if isinstance(s, bool) or not hasattr(type(s), "__index__") or operator.index(s) not in (1, -1):
            raise ValueError(f"sign {i} is {s!r}; every sign must be the int 1 or -1")
    return tuple(operator.index(s) for s in values)


#: Transform name -> its class: the registry every other module reads (:func:`register`).
TRANSFORMS: dict[str, type[TieTransform]] = {}

_T = TypeVar("_T", bound=type[TieTransform])


def register(cls: _T) -> _T:
    """Add ``cls`` to :data:`TRANSFORMS` under ``cls.name`` (usable as a class decorator)."""
    if not isinstance(cls.name, str) or not cls.name or not cls.call or not cls.adjective:
        raise ValueError(f"{cls.__name__} needs a name, an adjective and a call to be registered")
    if cls.name in TRANSFORMS:
        raise ValueError(f"a transform named {cls.name!r} is registered already ({TRANSFORMS[cls.name].__name__})")
    TRANSFORMS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove the transform ``name`` from :data:`TRANSFORMS`."""
    del TRANSFORMS[name]


register(Transpose)
register(Reflect)


def transform_class(name: str | None) -> type[TieTransform]:
    """The class of the transform ``name`` (:class:`Identity` for ``None``); ``KeyError`` if unknown."""
    return Identity if name is None else TRANSFORMS[name]


def freeze(params: Mapping[str, Any]) -> Params:
    """``params`` (a JSON object of scalars and lists) in the hashable form a tie records."""

    def frozen(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(frozen(v) for v in value)
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        raise ValueError(f"transform parameters must be JSON scalars or lists, got {type(value).__name__}")

    return tuple(sorted((str(k), frozen(v)) for k, v in params.items()))


def thaw(params: Params) -> dict[str, Any]:
    """The JSON object of :func:`freeze`'s form (tuples back to lists)."""

    def thawed(value: Any) -> Any:
        return [thawed(v) for v in value] if isinstance(value, tuple) else value

    return {k: thawed(v) for k, v in params}


def build(name: str | None, params: Params = ()) -> TieTransform:
    """The transform ``name`` with ``params`` (as a tie records them)."""
    return transform_class(name).from_params(thaw(params))


def held_transform(module: nn.Module, name: str) -> TieTransform | None:
    """The transform when ``module.<name>`` is computed by exactly one of tying's registered
    transforms (a transformed tie's target), else ``None``."""
    if not parametrize.is_parametrized(module, name):
        return None
    plist = parametrization_list(module, name)
    if len(plist) != 1:
        return None
    held = plist[0]
    return held if isinstance(held, TieTransform) and TRANSFORMS.get(str(held.name)) is type(held) else None


@dataclass(frozen=True)
class SourceParametrization:
    """A parametrization tying can put on a tie group's source and re-create from the spec: every
    member of the group then reads it, computed from the source's originals (one ``g`` and one
    ``v`` for weight normalization)."""

    kind: str
    #: Names of the parametrization's originals (``original0``: ``g``, ``original1``: ``v``).
    originals: tuple[str, ...]
    #: ``apply(module, name, options)`` parametrizes ``module.<name>`` (keeping its value).
    apply: Callable[[nn.Module, str, dict[str, Any]], None]
    #: The options of a parametrization module of this kind (``{"dim": 0}``), else ``None``.
    options: Callable[[nn.Module], dict[str, Any] | None]


def _weight_norm(module: nn.Module, name: str, options: dict[str, Any]) -> None:
    weight_norm(module, name, dim=options["dim"])


class LowRankUpdate(nn.Module):
    r"""LoRA as a parametrization (Hu et al. 2021, arXiv 2106.09685): :math:`W + \frac{\alpha}{r} B A`
    with :math:`B \in \mathbb{R}^{m\times r}` (zeros) and :math:`A \in \mathbb{R}^{r\times n}`
    (Kaiming-uniform, as peft), so it starts as :math:`W`. Put on a tie group's source by
    :func:`tying.peft.add_lora`, every member reads one :math:`W + \frac{\alpha}{r} BA`."""

    def __init__(self, shape: Sequence[int], rank: int, alpha: float, *, dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        rows, cols = shape
        self.rank, self.alpha = rank, alpha
        self.lora_A = nn.Parameter(torch.empty(rank, cols, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(rows, rank, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=5**0.5)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.alpha / self.rank) * (self.lora_B @ self.lora_A)


def _low_rank(module: nn.Module, name: str, options: dict[str, Any]) -> None:
    weight = getattr(module, name)
    update = LowRankUpdate(weight.shape, int(options["rank"]), float(options["alpha"]), dtype=weight.dtype, device=weight.device)
    parametrize.register_parametrization(module, name, update)


#: Kind -> how to apply and recognise it. Weight normalization (Salimans & Kingma 2016):
#: :math:`W = g\,v / \lVert v \rVert` along every dimension but ``dim``. LoRA
#: (:class:`LowRankUpdate`): the base ``original`` and the update's ``lora_A`` / ``lora_B``, which
#: every member reads from one module.
SOURCE_PARAMETRIZATIONS: dict[str, SourceParametrization] = {
    "weight_norm": SourceParametrization(
        "weight_norm", ("original0", "original1"), _weight_norm, lambda p: {"dim": p.dim} if isinstance(p, _WeightNorm) else None
    ),
    "lora": SourceParametrization(
        "lora",
        ("original", "0.lora_A", "0.lora_B"),
        _low_rank,
        lambda p: {"rank": p.rank, "alpha": p.alpha} if isinstance(p, LowRankUpdate) else None,
    ),
}


def source_parametrization(module: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """``(kind, options)`` when ``module`` (one parametrization) is of a known kind, else ``None``."""
    for kind, sp in SOURCE_PARAMETRIZATIONS.items():
        options = sp.options(module)
        if options is not None:
            return kind, options
    return None
