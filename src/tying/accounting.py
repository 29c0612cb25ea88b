"""Parameter accounting of a model with ties: counts with and without duplicates, the bytes tying
saves, one row per tie group (:func:`tying.find_ties`) and one line per layer list shared
across depth (:func:`tying.layer_sharing`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tying._paths import unwrap
from tying.discovery import find_ties
from tying.sharing import summary_lines

__all__ = ["Summary", "SummaryRow", "summary"]


@dataclass(frozen=True)
class SummaryRow:
    """One tie group in a :class:`Summary`."""

    paths: tuple[str, ...]
    vias: tuple[str, ...]
    shape: tuple[int, ...]
    numel: int
    bytes_saved: int


@dataclass
class Summary:
    """Parameter accounting of a model with ties (see :func:`summary`)."""

    total_parameters: int
    unique_parameters: int
    total_bytes: int
    unique_bytes: int
    rows: list[SummaryRow] = field(default_factory=list)
    #: One line per layer list shared across depth (:func:`tying.share_layers`): layer -> set.
    sharing: list[str] = field(default_factory=list)

    @property
    def bytes_saved(self) -> int:
        return self.total_bytes - self.unique_bytes

    def __str__(self) -> str:
        header = ("group", "paths", "shape", "numel", "saved")
        body = [
            (
                str(i),
                ", ".join(p if v == "parameter" else f"{p} ({v})" for p, v in zip(r.paths, r.vias, strict=True)),
                "x".join(map(str, r.shape)),
                f"{r.numel:,}",
                format_bytes(r.bytes_saved),
            )
            for i, r in enumerate(self.rows, 1)
        ]
        lines = []
        if body:
            widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
            fmt = lambda row: "  ".join(  # noqa: E731
                cell.rjust(w) if c in (0, 3, 4) else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            lines += [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, body), ""]
        else:
            lines += ["no tied parameters", ""]
        lines += [
            f"parameters (with duplicates, as in state_dict): {self.total_parameters:,}",
            f"unique parameters:                              {self.unique_parameters:,}",
            f"bytes saved by tying:                           {format_bytes(self.bytes_saved)}",
            *self.sharing,
        ]
        return "\n".join(lines)


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``"512 B"``, ``"1.5 KiB"``, ``"3.2 GiB"`` (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError  # pragma: no cover


def summary(model: nn.Module) -> Summary:
    """Count parameters with duplicates (every ``state_dict`` entry, as naive counts do) and
    unique (each shared tensor once; overlapping memory once), the bytes tying saves, and one
    row per tie group from :func:`find_ties`. ``print(summary(model))`` gives an aligned table."""
    model = unwrap(model)
    entries = list(model.named_parameters(remove_duplicate=False))
    total = sum(p.numel() for _, p in entries)
    total_bytes = sum(p.numel() * p.element_size() for _, p in entries)
    per_key = dict(entries)
    unique, unique_bytes = total, total_bytes
    rows = []
    for g in find_ties(model):
        group_params = [per_key[m.state_key] for m in g.members]
        members_numel = sum(p.numel() for p in group_params)
        members_bytes = sum(p.numel() * p.element_size() for p in group_params)
        unique -= members_numel - g.numel
        unique_bytes -= members_bytes - g.nbytes
        rows.append(
            SummaryRow(tuple(g.paths), tuple(m.via for m in g.members), g.members[0].shape, g.numel, members_bytes - g.nbytes)
        )
    return Summary(total, unique, total_bytes, unique_bytes, rows, summary_lines(model))

