"""Progress output of a training run: epoch lines, and per-batch progress — a bar on a terminal,
else a line every few seconds (so a log file shows progress). Only rank 0 prints."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["Output"]


class Output:
    """Where a trainer reports: ``console`` (None: silent), on rank 0 only; ``unit`` is what the
    speed counts (``"tokens"``); off a terminal a progress line comes every ``every`` seconds."""

    def __init__(self, console: Console | None, unit: str, *, every: float = 30.0, rank: int = 0) -> None:
        self.console = console if rank == 0 else None
        self.unit, self.every = unit, every

    def log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False, soft_wrap=True)

    @contextmanager
    def progress(self, label: str, total: int, done: int) -> Iterator[Callable[[float, float], None]]:
        """Yields ``advance(mean loss, items/s)``, to call after each batch (``done`` of ``total``
        batches are done already)."""
        console, unit = self.console, self.unit
        if console is None:
            yield lambda loss, speed: None
        elif console.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as progress:
                bar = progress.add_task(label, total=total, completed=done)
                yield lambda loss, speed: progress.update(bar, advance=1, description=f"{label} loss {loss:.3f}")
        else:
            step, last = done, time.monotonic()

            def advance(loss: float, speed: float) -> None:
                nonlocal step, last
                step += 1
                if time.monotonic() - last >= self.every or step == total:
                    last = time.monotonic()
                    self.log(f"{label}: batch {step:,}/{total:,} | loss {loss:.3f} | {speed:,.0f} {unit}/s")

            yield advance
