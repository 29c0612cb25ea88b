"""Verifying ties: what the spec declares against what the model holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tying._paths import unwrap
from tying.adapters import adapter_sharing
from tying.discovery import find_ties
from tying.errors import TieVerificationError
from tying.graph import tie_broken
from tying.spec import Tie, get_spec, state_key_pairs

__all__ = ["verify", "TieReport", "BrokenTie"]


@dataclass(frozen=True)
class BrokenTie:
    """A declared tie the model does not hold, and why."""

    tie: Tie
    reason: str

    def __str__(self) -> str:
        return f"{self.tie.describe()}: {self.reason}"


@dataclass
class TieReport:
    """Declared vs observed ties, from :func:`verify`."""

    broken: list[BrokenTie] = field(default_factory=list)
    #: Groups of paths observed to share data that the spec does not declare.
    undeclared: list[list[str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken and not self.undeclared

    def __str__(self) -> str:
        if self.ok:
            return "all declared ties hold; no undeclared sharing"
        lines = [f"broken tie: {b}" for b in self.broken]
        lines += [
            f"undeclared sharing: {', '.join(g)} (declare it with tying.tie, or untie it)" for g in self.undeclared
        ]
        return "\n".join(lines)


def verify(model: nn.Module, *, raise_error: bool = True) -> TieReport:
    """Compare the declared ties with what the model holds.

    Returns a :class:`TieReport` listing each declared tie that is broken (a target that no longer
    holds its source's Parameter, e.g. after ``to_empty`` or ``load_state_dict(assign=True)``) and
    each group of paths observed to share data (:func:`tying.find_ties`) that no declaration
    explains (one update shared by the adapter layers of one tie group's members, as peft's
    ``ensure_weight_tying`` does, is explained by the tie). Adapter layers on a tie's members that
    give them different updates break the tie (:mod:`tying.peft`). With ``raise_error=True`` (default) a non-empty report raises
    :class:`TieVerificationError` with that listing.
    """
    model = unwrap(model)
    spec = get_spec(model)
    report = TieReport()
    for t in spec.ties:
        reason = tie_broken(model, spec, t)
        if reason is not None:
            report.broken.append(BrokenTie(t, reason))
    # A target's key reads its source's: members of one declared group map to one root (a broken
    # member is reported above).
    root = {tgt: src for t in spec.ties for src, tgt in state_key_pairs(spec, t)}
    root.update((t.target, t.source) for t in spec.ties)
    for group in find_ties(model):
        paths = [m.path for m in group.members]
        if len({root.get(p, p) for p in paths}) > 1 and not adapter_sharing(model, spec.ties, paths):
            report.undeclared.append(paths)
    if raise_error and not report.ok:
        raise TieVerificationError(f"{type(model).__name__}: tie verification failed\n{report}")
    return report


def require_intact(model: nn.Module, error: type[Exception], doing: str, fix: str) -> None:
    """Raise ``error("<doing>: declared ties are broken (<each broken tie>); <fix>")`` unless every
    declared tie of ``model`` holds (undeclared sharing is not checked)."""
    broken = verify(model, raise_error=False).broken
    if broken:
        raise error(f"{doing}: declared ties are broken ({'; '.join(map(str, broken))}); {fix}")
