"""The tie specification: what is tied to what, recorded on the model.

A tie is directional: ``source -> target`` (with an optional ``transform`` and its ``params``).
The source's ``nn.Parameter`` is the one stored and trained; every target is made to *read* it,
either as the very same Parameter object (``transform=None``) or through a parametrization
(a transform registered in :mod:`tying.transforms`, e.g. ``transform="transpose"``). The spec is
plain data so it survives ``copy.deepcopy``, pickling, ``.to()``, and is written into checkpoint
headers as JSON (:meth:`TieSpec.to_dict`, format version :data:`SPEC_FORMAT_VERSION`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tying._paths import adapted_path, parametrized_key, unwrap
from tying.transforms import SOURCE_PARAMETRIZATIONS, TRANSFORMS, Params, TieTransform, build, freeze, thaw, transform_class

__all__ = ["Tie", "TieSpec", "get_spec"]

#: A transform a target may apply to its source: a name registered in
#: :data:`tying.transforms.TRANSFORMS`, or ``None`` (the target *is* the source).
Transform = str | None

#: Version of the JSON written by :meth:`TieSpec.to_dict` (checkpoint header key ``"tying"``).
#: 2 added ``"parametrizations"`` (tie sources computed by e.g. weight normalization); version 1
#: files are read as before. A tie whose transform has parameters also records ``"params"``;
#: a reader that does not know the transform refuses the file by the transform's name.
SPEC_FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)

# Attribute under which the spec lives on the root module the ties were declared on.
_SPEC_ATTR = "_tying_spec"


@dataclass(frozen=True, repr=False)
class Tie:
    """One declared tie: ``target`` reads ``source`` (through ``transform`` if given, with the
    transform's ``params`` in :func:`tying.transforms.freeze`'s form; ``()`` for none)."""

    source: str
    target: str
    transform: Transform = None
    params: Params = ()

    def describe(self) -> str:
        arrow = "->" if self.transform is None else f"-[{self.transform}]->"
        return f"{self.source} {arrow} {self.target}"

    def make_transform(self) -> TieTransform:
        """The transform module the target reads its source through (:class:`~tying.transforms.Identity` for none)."""
        return build(self.transform, self.params)

    def is_read_by(self, module: nn.Module) -> bool:
        """Whether ``module`` (a parametrization) is this tie's transform with its parameters."""
        return (
            isinstance(module, TieTransform)
            and self.transform is not None
            and type(module) is TRANSFORMS.get(self.transform)
            and freeze(module.params()) == self.params
        )

    def moved(self, source: str, target: str) -> Tie:
        """The same tie (transform and parameters) between other paths."""
        return dataclasses.replace(self, source=source, target=target)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this tie in a spec (``"params"`` only when it has some)."""
        out: dict[str, Any] = {"source": self.source, "target": self.target, "transform": self.transform}
        if self.params:
            out["params"] = thaw(self.params)
        return out

    def __repr__(self) -> str:
        params = f", params={self.params!r}" if self.params else ""
        return f"Tie(source={self.source!r}, target={self.target!r}, transform={self.transform!r}{params})"


@dataclass
class TieSpec:
    """The ordered list of declared ties of one model.

    Invariants (kept by :mod:`tying.core`): every target has exactly one source; a source is never
    itself a target (chains are resolved to the root source when declared); no path appears twice
    as a target.
    """

    ties: list[Tie] = field(default_factory=list)
    #: Sources computed by a parametrization every member of their group reads through, e.g.
    #: ``{"embed.weight": {"kind": "weight_norm", "dim": 0}}`` (:func:`tying.weight_norm`).
    parametrizations: dict[str, dict[str, object]] = field(default_factory=dict)

    def source_of(self, target: str) -> Tie | None:
        """The tie whose target is ``target``, if any."""
        return next((t for t in self.ties if t.target == target), None)

    def targets_of(self, source: str) -> list[Tie]:
        """The ties reading ``source``, in declaration order."""
        return [t for t in self.ties if t.source == source]

    def groups(self) -> dict[str, list[Tie]]:
        """``{source: [ties reading it]}`` in declaration order."""
        out: dict[str, list[Tie]] = {}
        for t in self.ties:
            out.setdefault(t.source, []).append(t)
        return out

    def paths(self) -> set[str]:
        """Every path the spec mentions, sources and targets."""
        return {p for t in self.ties for p in (t.source, t.target)}

    def to_json(self) -> str:
        """Versioned JSON: ``{"version": 2, "ties": [{"source", "target", "transform"}, ...],
        "parametrizations": {...}}``."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_dict(self) -> dict[str, object]:
        """The JSON object of :meth:`to_json`."""
        return {
            "version": SPEC_FORMAT_VERSION,
            "ties": [t.to_dict() for t in self.ties],
            "parametrizations": self.parametrizations,
        }

    @classmethod
    def from_json(cls, text: str) -> TieSpec:
        """Parse :meth:`to_json` output; raises ``ValueError`` on anything malformed."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: object) -> TieSpec:
        """Parse :meth:`to_dict` output (any version in ``READ_VERSIONS``); raises ``ValueError``."""
        if not isinstance(data, dict) or data.get("version") not in READ_VERSIONS:
            raise ValueError(
                f"unsupported tie spec version {data.get('version') if isinstance(data, dict) else data!r} "
                f"(this tying reads versions {', '.join(map(str, READ_VERSIONS))}; upgrade tying)"
            )
        ties = data.get("ties")
        if not isinstance(ties, list):
            raise ValueError("tie spec has no 'ties' list")
        out = cls()
        for i, entry in enumerate(ties):
            t = _parse_tie(i, entry)
            if out.source_of(t.target) is not None or t.target == t.source:
                raise ValueError(f"tie spec entry {i}: target {t.target!r} is tied twice or to itself")
            out.ties.append(t)
        parametrizations = data.get("parametrizations", {})
        if not isinstance(parametrizations, dict):
            raise ValueError("tie spec 'parametrizations' must be an object")
        for source, entry in parametrizations.items():
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if kind not in SOURCE_PARAMETRIZATIONS:
                raise ValueError(
                    f"tie spec parametrization of {source!r} has unknown kind {kind!r} (known: {sorted(SOURCE_PARAMETRIZATIONS)})"
                )
            if not out.targets_of(source):
                raise ValueError(f"tie spec parametrization of {source!r}: no tie reads {source!r}")
            out.parametrizations[source] = dict(entry)
        for t in out.ties:
            feeding = out.source_of(t.source)
            if feeding is not None:
                raise ValueError(
                    f"tie spec has a chain: {t.source!r} is the source of {t.describe()!r} and the target of "
                    f"{feeding.describe()!r} (a source must not itself be a target)"
                )
        return out


def _parse_tie(i: int, entry: object) -> Tie:
    """Entry ``i`` of a spec's ``"ties"`` list; raises ``ValueError`` naming it."""
    if not isinstance(entry, dict):
        raise ValueError(f"tie spec entry {i} is not an object")
    source, target, transform = entry.get("source"), entry.get("target"), entry.get("transform")
    if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
        raise ValueError(f"tie spec entry {i} needs string 'source' and 'target', got {entry!r}")
    if transform is not None and transform not in TRANSFORMS:
        raise ValueError(f"tie spec entry {i} has unknown transform {transform!r} (known: {sorted(TRANSFORMS)})")
    params = entry.get("params", {})
    if not isinstance(params, dict) or (params and transform is None):
        raise ValueError(f"tie spec entry {i}: 'params' must be an object, and only a transform takes them; got {params!r}")
    try:
        made = transform_class(transform).from_params(params)
    except ValueError as exc:
        raise ValueError(f"tie spec entry {i}: bad parameters for transform {transform!r}: {exc}") from None
    return Tie(source, target, transform, freeze(made.params()))


def _declared(model: nn.Module) -> list[tuple[str, nn.Module, TieSpec]]:
    """``(path prefix, module, its own spec)`` for ``model`` and every submodule carrying a spec."""
    out = []
    for path, module in model.named_modules():
        # The module's own attribute: wrappers that forward unknown attributes to what they wrap
        # (peft's PeftModel -> LoraModel -> the model) would otherwise answer for it at each level.
        spec = module.__dict__.get(_SPEC_ATTR)
        if isinstance(spec, TieSpec) and spec.ties:
            out.append((f"{path}." if path else "", module, spec))
    return out


def get_spec(model: nn.Module) -> TieSpec:
    """The ties declared on ``model`` and on its submodules (their paths prefixed with the
    submodule's path), so a model wrapping a tied model — ``nn.Sequential(lm, ...)``, a task head
    around a backbone — answers for the ties its parts declared. Empty if none. A ``torch.compile``
    / DDP wrapper answers for the model it wraps. The returned spec is a snapshot: declare and
    remove ties with :func:`tying.tie` / :func:`tying.untie`."""
    declared = _declared(unwrap(model))
    return TieSpec(
        [_as_held(prefix, module, t) for prefix, module, spec in declared for t in spec.ties],
        {prefix + source: dict(p) for prefix, _, spec in declared for source, p in spec.parametrizations.items()},
    )


def _as_held(prefix: str, module: nn.Module, t: Tie) -> Tie:
    """``t`` declared on ``module`` (at ``prefix``) under the paths the model holds it now: an
    adapter layer wrapped around a member (peft's LoRA) moves its weight to ``<path>.base_layer``."""
    return t.moved(prefix + adapted_path(module, t.source), prefix + adapted_path(module, t.target))


def remove_tie(model: nn.Module, tie: Tie) -> None:
    """Remove the declaration ``tie`` (as :func:`get_spec` lists it) from the module that holds it."""
    for prefix, module, spec in _declared(model):
        for own in spec.ties:
            if _as_held(prefix, module, own) == tie:
                spec.ties.remove(own)
                if not spec.targets_of(own.source):
                    spec.parametrizations.pop(own.source, None)
                return
    raise KeyError(tie.describe())


def own_spec(model: nn.Module) -> TieSpec:
    """The spec attached to ``model`` itself (attached now if absent), where its declarations go."""
    spec = model.__dict__.get(_SPEC_ATTR)
    if not isinstance(spec, TieSpec):
        spec = TieSpec()
        object.__setattr__(model, _SPEC_ATTR, spec)
    return spec


# --------------------------------------------------------------------------- state_dict keys


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
    parametrization (:func:`tying.weight_norm`), each of its originals under both paths."""
    recorded = spec.parametrizations.get(tie_.source)
    if recorded is None:
        return [(tie_.source, target_state_key(tie_))]
    originals = SOURCE_PARAMETRIZATIONS[str(recorded["kind"])].originals
    return [(_originals_key(tie_.source, o), _originals_key(tie_.target, o)) for o in originals]


def source_keys(spec: TieSpec) -> set[str]:
    """The ``state_dict`` keys holding the declared sources' tensors (a file stores a group under them)."""
    return {src for t in spec.ties for src, _ in state_key_pairs(spec, t)}
