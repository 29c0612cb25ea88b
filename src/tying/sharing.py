r"""Cross-layer parameter sharing: the :math:`N` layers of an ``nn.ModuleList`` use :math:`M`
unique parameter sets, declared as ordinary ties.

Takase & Kiyono 2021 ("Lessons on Parameter Sharing across Layers in Transformers", arXiv
2104.06022) assign set :math:`s(i)` to layer :math:`i` (0-indexed here; sets are numbered by first
use and shown as letters):

* ``sequence`` — consecutive layers share, :math:`s(i) = \lfloor i / (N/M) \rfloor`
  (``AABBCC``); needs :math:`M \mid N`.
* ``cycle`` — the sets repeat in order, :math:`s(i) = i \bmod M` (``ABCABC``); any :math:`M \le N`.
* ``cycle_rev`` — ``cycle``, except that the final round runs backwards:
  :math:`s(i) = i \bmod M` for :math:`i < \max(M, N - M)`, else :math:`M - 1 - (i \bmod M)`
  (``ABCCBA`` for :math:`N=6, M=3`; ``ABCDEF ABCDEF FEDCBA`` for :math:`N=18, M=6`, the paper's
  headline model). Needs :math:`M \mid N`: the paper's Algorithm 1 reverses the last round of
  :math:`\lceil N/M \rceil` (the layers after :math:`M(\lceil N/M \rceil - 1)`) while the
  authors' fairseq code reverses the last :math:`M` layers; the two agree exactly when
  :math:`M` divides :math:`N`, so no other case is guessed at.
* ``all`` — one set for every layer (ALBERT, Lan et al. 2020, arXiv 1909.11942): :math:`M = 1`.

Every parameter of layer :math:`i` is tied (:func:`tying.tie`) to the same parameter of the first
layer using set :math:`s(i)`, so the sharing is recorded in the model's spec and survives
:func:`tying.save` / :func:`tying.load` (a checkpoint stores each set once),
:func:`tying.materialize`, ``torch.compile`` and :func:`tying.distributed.fully_shard_tied`
like every other tie; the gradient of a set is the sum of its uses' gradients. Buffers (e.g.
batch-norm running statistics) stay per layer: ties share parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from torch import nn
from torch.nn.utils import parametrize

from tying._paths import unwrap
from tying._text import plural
from tying.core import tie
from tying.errors import TieError
from tying.spec import Tie, TieSpec, get_spec

__all__ = ["STRATEGIES", "LayerSharing", "Strategy", "is_norm", "layer_assignment", "layer_sharing", "share_layers"]

Strategy = Literal["sequence", "cycle", "cycle_rev", "all"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

# Normalisation layers of torch; a custom class whose name ends in "Norm" (LlamaRMSNorm,
# T5LayerNorm, ...) counts too, since models commonly define their own.
_NORM_TYPES = (
    nn.LayerNorm,
    nn.RMSNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer (its parameters are left per layer by
    ``share_layers(..., share_norms=False)``): a torch norm layer, or a class named ``*Norm``."""
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith("Norm")


def layer_assignment(num_layers: int, unique: int, strategy: Strategy) -> tuple[int, ...]:
    """The parameter set of each of ``num_layers`` layers under ``strategy`` with ``unique``
    sets (see the module docstring for the rules); sets are numbered ``0 .. unique-1`` by first use.

    >>> layer_assignment(6, 3, "cycle_rev")
    (0, 1, 2, 2, 1, 0)

    Raises:
        TieError: unknown strategy; ``unique`` not an integer, below 1 or above ``num_layers``;
            ``unique`` not dividing ``num_layers`` for ``sequence`` and ``cycle_rev``;
            ``unique != 1`` for ``all``.
    """
    n, m = num_layers, unique
    if strategy not in STRATEGIES:
        raise TieError(f"unknown sharing strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not isinstance(m, int) or isinstance(m, bool) or m < 1:
        raise TieError(f"unique={m!r}: the number of parameter sets must be an integer of at least 1")
    if n < m:
        raise TieError(f"unique={m} sets for {n} layers: there cannot be more sets than layers (unique <= {n})")
    if strategy == "all" and m != 1:
        raise TieError(f"strategy 'all' shares one set across every layer; got unique={m} (use unique=1, or another strategy)")
    if strategy in ("sequence", "cycle_rev") and n % m:
        divisors = ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
        raise TieError(
            f"strategy {strategy!r} needs unique to divide the number of layers: {n} layers over {m} sets; "
            f"choose unique in {{{divisors}}}, or strategy 'cycle'"
        )
    if strategy == "sequence":
        return tuple(i // (n // m) for i in range(n))
    if strategy == "cycle_rev":
        return tuple(i % m if i < max(m, n - m) else m - 1 - i % m for i in range(n))
    return tuple(i % m for i in range(n))  # cycle; "all" is cycle with one set


def _label(s: int, m: int) -> str:
    return chr(ord("A") + s) if m <= 26 else str(s)


@dataclass(frozen=True)
class LayerSharing:
    """How the layers of one ``nn.ModuleList`` share parameter sets (see :func:`layer_sharing`)."""

    #: Path of the ``nn.ModuleList``.
    path: str
    #: Set of each layer, numbered by first use.
    assignment: tuple[int, ...]
    #: Whether the layers' normalisation parameters are shared with the rest of their set.
    share_norms: bool = True

    @property
    def unique(self) -> int:
        """M, the number of distinct parameter sets."""
        return max(self.assignment) + 1

    @property
    def strategy(self) -> str | None:
        """The strategy whose rule gives this assignment (``None`` for a hand-made one)."""
        n, m = len(self.assignment), self.unique
        for strategy in ("all", "sequence", "cycle", "cycle_rev"):
            try:
                if layer_assignment(n, m, strategy) == self.assignment:  # type: ignore[arg-type]
                    return strategy
            except TieError:
                continue
        return None

    @property
    def sets(self) -> str:
        """The set of each layer as letters (numbers beyond 26 sets), e.g. ``A B C C B A``."""
        return " ".join(_label(s, self.unique) for s in self.assignment)

    def __str__(self) -> str:
        """One line, e.g. ``blocks: 6 layers over 3 sets (cycle_rev): A B C C B A``."""
        n, m = len(self.assignment), self.unique
        rule = f" ({self.strategy})" if self.strategy is not None else ""
        norms = "" if self.share_norms else "; norms per layer"
        return f"{self.path}: {plural(n, 'layer')} over {plural(m, 'set')}{rule}: {self.sets}{norms}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for run records: ``path``, ``assignment``, ``unique``, ``strategy``,
        ``share_norms``, ``sets`` and ``text`` (``str`` of it)."""
        return {
            "path": self.path,
            "assignment": list(self.assignment),
            "unique": self.unique,
            "strategy": self.strategy,
            "share_norms": self.share_norms,
            "sets": self.sets,
            "text": str(self),
        }


def _layer_list(model: nn.Module, path: str) -> nn.ModuleList:
    lists = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and not isinstance(m, parametrize.ParametrizationList) and name
    ]
    known = f"; its ModuleLists: {', '.join(map(repr, lists))}" if lists else "; it has no nn.ModuleList"
    try:
        layers = model.get_submodule(path)
    except AttributeError:
        raise TieError(f"no module {path!r} in {type(model).__name__}{known}") from None
    if not isinstance(layers, nn.ModuleList) or isinstance(layers, parametrize.ParametrizationList):
        raise TieError(f"{path!r} is a {type(layers).__name__}, not an nn.ModuleList of layers{known}")
    return layers


def _layer_params(layer: nn.Module) -> dict[str, tuple[nn.Parameter, bool]]:
    """Relative parameter path -> (Parameter, owned by a norm layer), every registration."""
    return {
        f"{mod_name}.{name}" if mod_name else name: (p, is_norm(module))
        for mod_name, module in layer.named_modules(remove_duplicate=False)
        for name, p in module.named_parameters(recurse=False, remove_duplicate=False)
    }


def _check_structure(path: str, params: list[dict[str, tuple[nn.Parameter, bool]]]) -> None:
    """Every layer has layer 0's parameters, in the same shapes, dtypes and devices."""
    first = params[0]
    for i, layer in enumerate(params[1:], 1):
        for name in [*first, *(k for k in layer if k not in first)]:
            if name not in layer:
                raise TieError(f"layers of {path!r} differ in structure: layer {i} has no {name!r}, which layer 0 has")
            if name not in first:
                raise TieError(f"layers of {path!r} differ in structure: layer {i} has {name!r}, which layer 0 lacks")
            a, b = first[name][0], layer[name][0]
            for what, x, y in (("shape", list(a.shape), list(b.shape)), ("dtype", a.dtype, b.dtype), ("device", a.device, b.device)):
                if x != y:
                    raise TieError(
                        f"layers of {path!r} differ in structure: {name!r} has {what} {y} in layer {i} but {x} in layer 0"
                    )


def share_layers(
    model: nn.Module,
    path: str,
    *,
    unique: int = 1,
    strategy: Strategy = "all",
    share_norms: bool = True,
) -> LayerSharing:
    """Make the layers of the ``nn.ModuleList`` at ``path`` use ``unique`` parameter sets by
    ``strategy`` (``"sequence"``, ``"cycle"``, ``"cycle_rev"``, ``"all"``; module docstring), as
    declared ties: every parameter of layer ``i`` is tied to the same parameter of the first layer
    of its set, whose current values the set keeps.

    ``share_norms=False`` leaves the parameters of normalisation layers (:func:`is_norm`) per
    layer. The layers may be any module, but all of the same structure (parameter names, shapes,
    dtypes, devices) and distinct objects. All checks run before the first tie, so a refused call
    changes nothing; repeating a call is a no-op. Returns the sharing, as :func:`layer_sharing`
    reads it back. Call it before building an optimizer (the shared layers' own Parameters leave
    the model).

    Raises:
        TieError: ``path`` is not an ``nn.ModuleList``; a bad ``unique`` / ``strategy``
            (:func:`layer_assignment`); layers of different structure (naming the first differing
            parameter); a ``None`` entry; one module object registered as two layers; a
            parametrized layer parameter; a layer parameter already tied otherwise.
    """
    model = unwrap(model)
    layers = _layer_list(model, path)
    assignment = layer_assignment(len(layers), unique, strategy)
    for i, layer in enumerate(layers):
        if layer is None:
            raise TieError(
                f"layer {i} of {path!r} is None: share_layers gives every layer of the list a parameter set; "
                "share a list whose every entry is a module"
            )
        for j in range(i):
            if layers[j] is layer:
                raise TieError(
                    f"layers {j} and {i} of {path!r} are one module object; build {len(layers)} separate layers "
                    "(share_layers declares the sharing)"
                )
    params = [_layer_params(layer) for layer in layers]
    for i, layer_params in enumerate(params):
        inside = next((name for name in layer_params if ".parametrizations." in f".{name}"), None)
        if inside is not None:
            raise TieError(
                f"{path}.{i}.{inside} belongs to a parametrization; share the layers before parametrizing them "
                "(tying.tie_transposed, weight_norm, ...)"
            )
    _check_structure(path, params)

    owner = {s: assignment.index(s) for s in set(assignment)}  # each set's first layer holds it
    planned = [
        Tie(f"{path}.{owner[s]}.{name}", f"{path}.{i}.{name}")
        for i, s in enumerate(assignment)
        if owner[s] != i
        for name, (_, norm) in params[i].items()
        if share_norms or not norm
    ]
    wanted = {t.target: t for t in planned}
    sources = {t.source for t in planned}
    for t in get_spec(model).ties:
        if wanted.get(t.target, t) != t or t.source in wanted or t.target in sources:
            clash = next(p for p in (t.target, t.source) if p in wanted or p in sources)
            raise TieError(
                f"cannot share the layers of {path!r}: {clash!r} is already in the tie {t.describe()!r}; "
                f"call tying.untie(model, {t.target!r}) first"
            )
    groups: dict[str, list[str]] = {}
    for t in planned:
        groups.setdefault(t.source, []).append(t.target)
    for source, targets in groups.items():
        tie(model, source, *targets)
    return _read_sharing(path, layers, get_spec(model)) or LayerSharing(path, assignment, share_norms)


def layer_sharing(model: nn.Module) -> list[LayerSharing]:
    """Each ``nn.ModuleList`` of ``model`` whose layers share parameter sets, read from the tie
    spec (so it holds for a model that got its ties from :func:`tying.load`), in module order.

    A list counts when each of its layers either owns all its parameters or has every parameter
    tied (without transform) to the same-named parameter of one owning layer of the list;
    normalisation parameters may instead stay per layer, consistently across the list. Other
    ties (a single cross-layer tie, say) are not layer sharing and are not reported here, nor is
    a list holding ``None`` (a skipped or pruned layer has no set; :func:`share_layers` refuses it).
    """
    model = unwrap(model)
    spec = get_spec(model)
    found = []
    for path, layers in model.named_modules():
        if isinstance(layers, nn.ModuleList) and not isinstance(layers, parametrize.ParametrizationList) and len(layers) > 1:
            sharing = _read_sharing(path, layers, spec)
            if sharing is not None:
                found.append(sharing)
    return found


def _read_sharing(path: str, layers: nn.ModuleList, spec: TieSpec) -> LayerSharing | None:
    if any(layer is None for layer in layers):  # nn.ModuleList allows None entries; iterating yields them
        return None
    prefix = f"{path}."
    reads: list[int] = []  # the layer whose parameters each layer reads (itself if it owns them)
    norm_modes: set[bool] = set()  # per reading layer: are its norm parameters read too?
    for i, layer in enumerate(layers):
        params = _layer_params(layer)
        read: dict[str, int] = {}
        for name in params:
            t = spec.source_of(f"{prefix}{i}.{name}")
            if t is None:
                read[name] = i
                continue
            head, _, rest = t.source.removeprefix(prefix).partition(".")
            if t.transform is not None or not t.source.startswith(prefix) or rest != name or not head.isdigit():
                return None
            read[name] = int(head)
        norms = {read[n] for n, (_, norm) in params.items() if norm}
        core = {read[n] for n, (_, norm) in params.items() if not norm} or norms
        if len(core) != 1:
            return None
        (j,) = core
        if len(norms) > 1 or norms - {i, j}:
            return None
        if j != i and norms:
            norm_modes.add(norms == {j})
        reads.append(j)
    if all(r == i for i, r in enumerate(reads)) or len(norm_modes) > 1 or any(reads[r] != r for r in reads):
        return None
    number: dict[int, int] = {}
    assignment = tuple(number.setdefault(r, len(number)) for r in reads)
    return LayerSharing(path, assignment, share_norms=norm_modes != {False})


def summary_lines(model: nn.Module) -> list[str]:
    """One line per shared layer list (``str`` of each :func:`layer_sharing` entry), for
    :func:`tying.summary` to print under its table."""
    return [str(s) for s in layer_sharing(model)]
