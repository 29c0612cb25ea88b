"""Ctrl-C during training: the first SIGINT asks the loop to stop after the current batch (so it
can save a resumable point), a second one stops at once; under data parallelism every rank stops
after the same batch."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import torch
import torch.distributed as dist

__all__ = ["StopRequest"]


class StopRequest:
    """Whether SIGINT asked the run to stop (:meth:`catching` installs the handler); ``device``:
    where the processes of a data-parallel run reduce the flag."""

    def __init__(self, world_size: int = 1, device: torch.device | None = None) -> None:
        self.requested = False
        self.world_size, self.device = world_size, device

    @contextmanager
    def catching(self) -> Iterator[None]:
        """While the block runs, SIGINT sets :attr:`requested` (a second one raises
        KeyboardInterrupt); off the main thread signals are left alone."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def now(self) -> bool:
        """Whether to stop after this batch: on any rank's request, on every rank."""
        if self.world_size == 1:
            return self.requested
        flag = torch.tensor([int(self.requested)], device=self.device)  # NCCL reduces GPU tensors only
        dist.all_reduce(flag)
        return bool(flag.item())
