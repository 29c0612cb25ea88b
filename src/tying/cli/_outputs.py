"""Output paths checked before any work: a run folder that is an existing file, a report path
that is a folder, or a place that cannot be written is one ``error:`` line naming the path, before
the first training step and before anything is written (not a traceback after training)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from tying.cli.failures import fail

__all__ = ["check_outputs", "output_problem", "report_outputs"]


def _writable(folder: Path) -> str | None:
    """Why nothing can be created in the existing ``folder``, or None. A real attempt (a nameless
    temporary file), because permission bits do not tell: root ignores them, and a read-only
    mount or a full disk defeats them."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return f"{str(folder)!r} is not writable ({exc.strerror or exc})"


def output_problem(path: Path, *, folder: bool) -> str | None:
    """Why ``path`` cannot be written as an output folder (``folder``) or file, or None."""
    if path.exists() and path.is_dir() != folder:
        return "it is a file, not a folder" if folder else "it is a folder, not a file"
    existing = path if path.is_dir() else path.parent
    while not existing.exists():  # the folders to create: the nearest existing one must take them
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    return _writable(existing)


def report_outputs(out: Path, report: str) -> list[tuple[str, Path]]:
    """The files of report ``report`` in ``out`` that can be named before the runs finish: the
    markdown and CSV, and any plot path already there (a folder in its place is refused)."""
    return [("report", out / f"{report}{suffix}") for suffix in (".md", ".csv")] + [("plot", p) for p in sorted(out.glob(f"{report}-*.png"))]


def check_outputs(folders: Iterable[tuple[str, Path]] = (), files: Iterable[tuple[str, Path]] = ()) -> None:
    """Exit with one ``error:`` line at the first (label, path) that cannot be written, as a
    folder (``folders``) or a file (``files``)."""
    for paths, folder in ((folders, True), (files, False)):
        for label, path in paths:
            problem = output_problem(path, folder=folder)
            if problem is not None:
                raise fail(f"cannot write {label} {str(path)!r}: {problem}; nothing was written")
