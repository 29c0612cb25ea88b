"""A one-line description of the machine a result was measured on, stored with every result."""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["describe_machine"]


def describe_machine() -> str:
    """CPU model, core count, Python and torch versions, torch threads and allocator settings."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    allocator = os.environ.get("GLIBC_TUNABLES", "default glibc malloc")
    return (
        f"{cpu}; {os.cpu_count()} cores; Python {platform.python_version()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); allocator: {allocator}"
    )
