"""Peak training memory against depth: the trellis level stacked L times (tied across depth,
back-propagated through every level) against the same level run L iterations as an implicit layer
(``tying.nn.Implicit``: the iterations run without an autograd graph, the gradient is the implicit
one), for L = 4, 8, 16, 32 (docs/RESULTS.md, "Memory against depth").

Each measurement is one training step (forward, cross-entropy, backward) of the trellis language
model of the ``ptb-depth-*`` recipes (vocabulary 10,000, width 200, kernel 2, a batch of 20
windows of 35 tokens), in a fresh Python process, so no allocation of another measurement is
reused. Two numbers per step:

* **peak memory**: the process's resident high-water mark (``ru_maxrss``) after the step minus
  before it (model, batch and optimizer already built), in MiB: what the step added at its peak;
* **saved for backward**: the bytes of the tensors autograd keeps for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once), exact and
  allocator-independent.

Both are measured under two settings of glibc's allocator: its default, whose dynamic mmap
threshold serves freed large blocks again from the heap (which can fragment and keep the high-water
mark rising when a loop allocates and frees many blocks), and a fixed threshold
(``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536``: every block of 64 KiB or more is mapped
and unmapped on its own), under which the resident memory follows the live tensors.

The implicit layer runs exactly L forward iterations (fixed-point iteration with a tolerance it
cannot reach, so the cap L is the depth; its non-convergence warning is silenced) and its
adjoint solve at most L. Goal: its peak memory flat in depth, within 10 % from L = 4 to 32
(judged under each allocator setting).

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/depth_memory.py --out results/depth/memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

DEPTHS = (4, 8, 16, 32)
GOAL = 0.10
VOCAB, WIDTH, BATCH, STEPS = 10_000, 200, 20, 35
#: allocator setting -> GLIBC_TUNABLES value (None: unset).
ALLOCATORS = {"glibc default": None, "mmap threshold 64 KiB": "glibc.malloc.mmap_threshold=65536"}


def measure(kind: str, depth: int) -> dict[str, Any]:
    """One training step of the ``kind`` model (``"stack"`` or ``"implicit"``) at ``depth``, in this process."""
    from tying.models import TrellisConfig, TrellisLanguageModel

    torch.manual_seed(0)
    solve = {"levels": 1, "depth": "equilibrium", "solver": "fixed_point", "tol": 1e-12, "max_iter": depth} if kind == "implicit" else {"levels": depth}
    model = TrellisLanguageModel(TrellisConfig(VOCAB, WIDTH, WIDTH, kernel_size=2, **solve))  # type: ignore[arg-type]
    if model.equilibrium is not None:
        model.equilibrium.backward_max_iter = depth
    tokens = torch.randint(0, VOCAB, (STEPS + 1, BATCH), generator=torch.Generator().manual_seed(1))
    state = model.init_state(BATCH)
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with warnings.catch_warnings(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        warnings.simplefilter("ignore", RuntimeWarning)  # the implicit layer stops at its cap by design
        logits, _ = model(tokens[:-1], state)
        F.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten()).backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = model.equilibrium.last_stats if model.equilibrium is not None else None
    return {
        "model": kind,
        "depth": depth,
        "peak_mib": (after - before) / 1024,  # ru_maxrss is in KiB on Linux
        "saved_mib": sum(saved.values()) / 2**20,
        "iterations": stats.iterations if stats else depth,
        "backward_iterations": stats.backward_iterations if stats else depth,
    }


def child(allocator: str, kind: str, depth: int) -> dict[str, Any]:
    """:func:`measure` in a fresh process under the ``allocator`` setting of :data:`ALLOCATORS`."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if ALLOCATORS[allocator]:
        env["GLIBC_TUNABLES"] = ALLOCATORS[allocator]  # type: ignore[assignment]
    run = subprocess.run([sys.executable, __file__, "--one", kind, str(depth)], capture_output=True, text=True, check=True, env=env)
    return {"allocator": allocator, **json.loads(run.stdout.strip().splitlines()[-1])}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, label in (("stack", "tied stack"), ("implicit", "implicit layer")):
        for allocator, marker in zip(ALLOCATORS, "os"):
            pts = [r for r in rows if r["model"] == kind and r["allocator"] == allocator]
            ax.plot([r["depth"] for r in pts], [r["peak_mib"] for r in pts], marker=marker, label=f"{label}: peak, {allocator}")
        pts = [r for r in rows if r["model"] == kind and r["allocator"] == next(iter(ALLOCATORS))]
        ax.plot([r["depth"] for r in pts], [r["saved_mib"] for r in pts], marker="x", linestyle="--", label=f"{label}: saved for backward")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="depth L (levels / solver iterations)", ylabel="MiB added by one training step", title="trellis LM, one training step")
    ax.set_xticks(DEPTHS, [str(d) for d in DEPTHS])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for memory.json, memory.md and memory.png")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "DEPTH"), help=argparse.SUPPRESS)  # a child process's measurement
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    from tying.machine import describe_code, describe_machine

    rows = [child(allocator, kind, depth) for allocator in ALLOCATORS for kind in ("stack", "implicit") for depth in DEPTHS]
    lines = [
        f"machine: {describe_machine()}; code: {describe_code()}",
        f"one training step, vocabulary {VOCAB:,}, width {WIDTH}, kernel 2, batch {BATCH} x {STEPS} tokens; MiB",
        f"{'allocator':<21} | {'model':<8} | {'depth':>5} | {'peak memory':>11} | {'saved for backward':>18} | {'iterations fwd / bwd':>20}",
        "-" * 100,
    ]
    lines += [
        f"{r['allocator']:<21} | {r['model']:<8} | {r['depth']:>5} | {r['peak_mib']:>11.1f} | {r['saved_mib']:>18.1f} | {r['iterations']:>9} / {r['backward_iterations']}"
        for r in rows
    ]
    lines.append("")
    for allocator in ALLOCATORS:
        stack, implicit = ([r["peak_mib"] for r in rows if r["allocator"] == allocator and r["model"] == kind] for kind in ("stack", "implicit"))
        growth = implicit[-1] / implicit[0] - 1
        lines.append(f"{allocator}: tied stack peak memory x{stack[-1] / stack[0]:.2f} from depth {DEPTHS[0]} to {DEPTHS[-1]}")
        lines.append(
            f"{'PASS' if abs(growth) <= GOAL else 'FAIL'}: {allocator}: implicit layer peak memory {growth:+.1%} from depth {DEPTHS[0]} to {DEPTHS[-1]} (goal within ±{GOAL:.0%})"
        )
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "memory.json").write_text(json.dumps({"machine": describe_machine(), "code": describe_code(), "rows": rows}, indent=2) + "\n")
        (args.out / "memory.md").write_text("```text\n" + "\n".join(lines) + "\n```\n")
        plot(rows, args.out / "memory.png")


if __name__ == "__main__":
    main()
