"""The tie specification: what is tied to what, recorded on the model.

A tie is directional: ``source -> target`` (with an optional ``transform``). The source's
``nn.Parameter`` is the one stored and trained; every target is made to *read* it, either as the
very same Parameter object (``transform=None``) or through a parametrization
(``transform="transpose"``). The spec is plain data so it survives ``copy.deepcopy``, pickling,
``.to()``, and is written into checkpoint headers as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from tying._paths import unwrap
from tying.transforms import TRANSFORMS

#: Transforms a target may apply to its source (:data:`tying.transforms.TRANSFORMS`).
#: ``None``: the target *is* the source.
Transform = Literal["transpose"] | None

#: Version of the JSON written by :meth:`TieSpec.to_json` (checkpoint header key ``"tying"``).
SPEC_FORMAT_VERSION = 1

# Attribute under which the spec lives on the root module the ties were declared on.
_SPEC_ATTR = "_tying_spec"


@dataclass(frozen=True)
class Tie:
    """One declared tie: ``target`` reads ``source`` (through ``transform`` if given)."""

    source: str
    target: str
    transform: Transform = None

    def describe(self) -> str:
        arrow = "->" if self.transform is None else f"-[{self.transform}]->"
        return f"{self.source} {arrow} {self.target}"


@dataclass
class TieSpec:
    """The ordered list of declared ties of one model.

    Invariants (kept by :mod:`tying.core`): every target has exactly one source; a source is never
    itself a target (chains are resolved to the root source when declared); no path appears twice
    as a target.
    """

    ties: list[Tie] = field(default_factory=list)

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
        """Versioned JSON: ``{"version": 1, "ties": [{"source", "target", "transform"}, ...]}``."""
        return json.dumps(
            {
                "version": SPEC_FORMAT_VERSION,
                "ties": [{"source": t.source, "target": t.target, "transform": t.transform} for t in self.ties],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TieSpec:
        """Parse :meth:`to_json` output; raises ``ValueError`` on anything malformed."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != SPEC_FORMAT_VERSION:
            raise ValueError(
                f"unsupported tie spec version {data.get('version') if isinstance(data, dict) else data!r} "
                f"(this tying reads version {SPEC_FORMAT_VERSION}; upgrade tying)"
            )
        ties = data.get("ties")
        if not isinstance(ties, list):
            raise ValueError("tie spec has no 'ties' list")
        out = cls()
        for i, entry in enumerate(ties):
            if not isinstance(entry, dict):
                raise ValueError(f"tie spec entry {i} is not an object")
            source, target, transform = entry.get("source"), entry.get("target"), entry.get("transform")
            if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
                raise ValueError(f"tie spec entry {i} needs string 'source' and 'target', got {entry!r}")
            if transform is not None and transform not in TRANSFORMS:
                raise ValueError(f"tie spec entry {i} has unknown transform {transform!r} (known: {sorted(TRANSFORMS)})")
            if out.source_of(target) is not None or target == source:
                raise ValueError(f"tie spec entry {i}: target {target!r} is tied twice or to itself")
            out.ties.append(Tie(source, target, transform))
        for t in out.ties:
            feeding = out.source_of(t.source)
            if feeding is not None:
                raise ValueError(
                    f"tie spec has a chain: {t.source!r} is the source of {t.describe()!r} and the target of "
                    f"{feeding.describe()!r} (a source must not itself be a target)"
                )
        return out


def _declared(model: nn.Module) -> list[tuple[str, nn.Module, TieSpec]]:
    """``(path prefix, module, its own spec)`` for ``model`` and every submodule carrying a spec."""
    out = []
    for path, module in model.named_modules():
        spec = getattr(module, _SPEC_ATTR, None)
        if isinstance(spec, TieSpec) and spec.ties:
            out.append((f"{path}." if path else "", module, spec))
    return out


def get_spec(model: nn.Module) -> TieSpec:
    """The ties declared on ``model`` and on its submodules (their paths prefixed with the
    submodule's path), so a model wrapping a tied model — ``nn.Sequential(lm, ...)``, a task head
    around a backbone — answers for the ties its parts declared. Empty if none. A ``torch.compile``
    / DDP wrapper answers for the model it wraps. The returned spec is a snapshot: declare and
    remove ties with :func:`tying.tie` / :func:`tying.untie`."""
    return TieSpec(
        [Tie(prefix + t.source, prefix + t.target, t.transform) for prefix, _, spec in _declared(unwrap(model)) for t in spec.ties]
    )


def remove_tie(model: nn.Module, tie: Tie) -> None:
    """Remove the declaration ``tie`` (as :func:`get_spec` lists it) from the module that holds it."""
    for prefix, _, spec in _declared(model):
        for own in spec.ties:
            if Tie(prefix + own.source, prefix + own.target, own.transform) == tie:
                spec.ties.remove(own)
                return
    raise KeyError(tie.describe())


def own_spec(model: nn.Module) -> TieSpec:
    """The spec attached to ``model`` itself (attached now if absent), where its declarations go."""
    spec = getattr(model, _SPEC_ATTR, None)
    if not isinstance(spec, TieSpec):
        spec = TieSpec()
        object.__setattr__(model, _SPEC_ATTR, spec)
    return spec
