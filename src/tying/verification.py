"""Verifying ties: what the spec declares against what the model holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tying._paths import resolve, unwrap
from tying.discovery import find_ties
from tying.errors import TieError, TieVerificationError
from tying.spec import Tie, TieSpec, get_spec
from tying.transforms import is_tying_parametrization

__all__ = ["verify", "require_intact", "TieReport", "BrokenTie"]


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


def _check_one(model: nn.Module, t: Tie) -> str | None:
    try:
        src = resolve(model, t.source)
        ref = resolve(model, t.target)
    except TieError as exc:
        return str(exc)
    if t.transform is None:
        if ref.param is src.param:
            return None
        comparable = "meta" not in (ref.param.device.type, src.param.device.type)
        if comparable and ref.param.shape == src.param.shape and torch.equal(ref.param.detach().cpu(), src.param.detach().cpu()):
            return "distinct Parameter objects (equal values now, but they will drift apart in training)"
        return "distinct Parameter objects with different values"
    held = is_tying_parametrization(ref.owner, ref.name) if ref.parametrized else None
    if held != t.transform:
        return f"{t.target!r} is a plain tensor, not a {t.transform} of the source"
    if ref.param is not src.param:
        return f"{t.target!r} reads the {t.transform} of a different Parameter"
    return None


def verify(model: nn.Module, *, raise_error: bool = True) -> TieReport:
    """Compare the declared ties with what the model holds.

    Returns a :class:`TieReport` listing each declared tie that is broken (a target that no longer
    holds its source's Parameter, e.g. after ``to_empty`` or ``load_state_dict(assign=True)``) and
    each group of paths observed to share data (:func:`tying.find_ties`) that no declaration
    explains. With ``raise_error=True`` (default) a non-empty report raises
    :class:`TieVerificationError` with that listing.
    """
    model = unwrap(model)
    spec = get_spec(model)
    report = TieReport()
    for t in spec.ties:
        reason = _check_one(model, t)
        if reason is not None:
            report.broken.append(BrokenTie(t, reason))
    for group in find_ties(model):
        paths = [m.path for m in group.members]
        # Members of one declared group map to one root; a broken member is reported above.
        if len({_declared_root(spec, p) for p in paths}) > 1:
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


def _declared_root(spec: TieSpec, path: str) -> str:
    t = spec.source_of(path)
    return path if t is None else t.source
