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

#: Transforms a target may apply to its source. ``None``: the target *is* the source.
Transform = Literal["transpose"] | None
TRANSFORMS: tuple[str, ...] = ("transpose",)

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
                raise ValueError(f"tie spec entry {i} has unknown transform {transform!r} (known: {TRANSFORMS})")
            if out.source_of(target) is not None or target == source:
                raise ValueError(f"tie spec entry {i}: target {target!r} is tied twice or to itself")
            out.ties.append(Tie(source, target, transform))
        if out.paths() and any(out.source_of(t.source) for t in out.ties):
            raise ValueError("tie spec has a chain (a source that is also a target)")
        return out


def get_spec(model: nn.Module) -> TieSpec:
    """The tie spec declared on ``model`` (empty if none; not attached until a tie is declared).
    A ``torch.compile`` / DDP wrapper answers for the model it wraps."""
    spec = getattr(unwrap(model), _SPEC_ATTR, None)
    return spec if isinstance(spec, TieSpec) else TieSpec()


def _spec_for_update(model: nn.Module) -> TieSpec:
    """The model's spec, attached to it so updates stick."""
    spec = getattr(model, _SPEC_ATTR, None)
    if not isinstance(spec, TieSpec):
        spec = TieSpec()
        object.__setattr__(model, _SPEC_ATTR, spec)
    return spec
