"""One-line descriptions of the machine and of the code a result was measured with, stored with
every result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

__all__ = ["describe_machine", "describe_code", "peak_memory_mib"]


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


def describe_code() -> str:
    """``tying <version>``, and when it is imported from a git checkout the commit and whether the
    package's files differ from it (``tying 0.1.0, git 1d61232 + uncommitted changes``): a rerun
    reproduces a result only with the same code."""
    from tying import __version__

    package = Path(__file__).resolve().parent
    text = f"tying {__version__}"
    try:
        git = ["git", "-C", str(package)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        changes = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):  # not a checkout, or no git
        return text
    return f"{text}, git {commit.stdout.strip()}" + (" + uncommitted changes" if changes.stdout.strip() else "")


def peak_memory_mib() -> float | None:
    """This process's peak resident memory so far in MiB (``getrusage``'s ``ru_maxrss``: a
    high-water mark over everything the process held — interpreter, data, model, activations), or
    None where the ``resource`` module does not exist (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
