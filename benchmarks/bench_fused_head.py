"""Fused tied output + cross-entropy vs the naive ``F.linear`` + ``F.cross_entropy`` head, eager
and compiled.

For each (N, d, V) and dtype, in one process: forward+backward time of the three heads —
``naive`` (eager), ``compiled`` (the naive head through ``torch.compile``, which fuses the
softmax and its gradient: the leanest of the usual heads) and ``fused``
(:func:`tying.functional.tied_linear_cross_entropy` with its default memory budget) —
interleaved, the median of the repeats, and the time of the three GEMMs of 2·N·d·V FLOPs that any
exact method must do (unchunked, with the kernels the fused head uses when it takes several chunks). Every ratio printed is
the ratio of the medians printed beside it. Peak extra memory is the process's peak resident
memory above what was resident before one step, in a fresh subprocess per (configuration, head),
after one warm-up step of the same shapes (kernels loaded, the compiled head compiled).

bf16 rows run the three products in bf16. On a CPU without native bf16 matrix instructions
(avx512_bf16 or AMX) those products fall back to kernels tens of times slower than fp32 — the
4096 x 1024 x 50,257 bf16 row then takes hours — so the script times a small bf16 and fp32
product first and skips the bf16 rows, saying why, when bf16 is the slower.

    python benchmarks/bench_fused_head.py            # prints a table and PASS/FAIL goal lines
    python benchmarks/bench_fused_head.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median, report_goals  # noqa: E402

from tying.functional import _add_grad_weight, chunk_rows, onednn_available, tied_linear_cross_entropy  # noqa: E402
from tying.machine import describe_machine  # noqa: E402

CONFIGS = [(8192, 512, 10000), (8192, 512, 33278), (4096, 1024, 50257)]
GOAL_CONFIG = (8192, 512, 33278, "fp32")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
HEADS = ("naive", "compiled", "fused")
Head = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _inputs(n: int, d: int, v: int):
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(n, d, generator=g) * 0.5).requires_grad_()
    w = (torch.randn(v, d, generator=g) * 0.05).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    return h, w, t


def _naive(compute_dtype: torch.dtype | None) -> Head:
    if compute_dtype is None:
        return lambda h, w, t: F.cross_entropy(F.linear(h, w), t)
    # the same reduced-precision GEMMs, done the obvious way
    return lambda h, w, t: F.cross_entropy(F.linear(h.to(compute_dtype), w.to(compute_dtype)).float(), t)


def make_head(head: str, compute_dtype: torch.dtype | None) -> Head:
    """The loss of one head; ``compiled`` compiles on its first call (static shapes)."""
    if head == "fused":
        return lambda h, w, t: tied_linear_cross_entropy(h, w, t, compute_dtype=compute_dtype)
    return torch.compile(_naive(compute_dtype), dynamic=False) if head == "compiled" else _naive(compute_dtype)


def _step(loss_fn: Head, h, w, t) -> torch.Tensor:
    h.grad = w.grad = None
    loss = loss_fn(h, w, t)
    loss.backward()
    return loss.detach()


def _error_vs_fp32(h, w, t, compute_dtype) -> tuple[float, float]:
    """Relative error of the fused head's loss and weight gradient against the naive fp32 head."""
    ref_loss = _step(_naive(None), h, w, t)
    ref_grad = w.grad.clone()
    loss = _step(make_head("fused", compute_dtype), h, w, t)
    return abs(float(loss - ref_loss)) / abs(float(ref_loss)), float((w.grad - ref_grad).norm() / ref_grad.norm())


def _three_gemms(h, w, compute_dtype) -> None:
    """The three products any exact head computes, unchunked, with the fused head's kernels."""
    cdt = compute_dtype or h.dtype
    hh, ww = h.detach().to(cdt), w.detach().to(cdt)
    z = hh @ ww.T
    z @ ww
    _add_grad_weight(torch.zeros(w.shape), z, hh)


def bf16_skip_reason() -> str | None:
    """Why bf16 rows are skipped on this CPU (its bf16 products are slower than fp32), or None."""
    rate = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(256, 512, dtype=dtype), torch.randn(2048, 512, dtype=dtype)
        best = min(_timed(lambda: a @ b.T) for _ in range(3))
        rate[dtype] = 2 * 256 * 512 * 2048 / best / 1e9
    if rate[torch.bfloat16] >= rate[torch.float32]:
        return None
    return (
        f"bf16 rows skipped: a bf16 matrix product runs at {rate[torch.bfloat16]:.1f} GFLOP/s here against "
        f"{rate[torch.float32]:.1f} for fp32 (no native bf16 matrix instructions, avx512_bf16 or AMX: a fallback kernel)"
    )


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _status(key: str) -> int:
    """A field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status: peak memory needs Linux")


def worker(head: str, n: int, d: int, v: int, dtype: str) -> None:
    """In this (fresh) process: one warm-up step, then print the peak resident memory of a second
    step above the memory resident before it (the kernel's peak, VmHWM, reset through clear_refs)."""
    h, w, t = _inputs(n, d, v)
    loss_fn = make_head(head, DTYPES[dtype])
    _step(loss_fn, h, w, t)
    h.grad = w.grad = None
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _status("VmRSS")
    _step(loss_fn, h, w, t)
    print(json.dumps({"peak_extra_bytes": _status("VmHWM") - base}))


def peak_extra(head: str, n: int, d: int, v: int, dtype: str) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", head, str(n), str(d), str(v), dtype],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_bytes"]


def measure(n: int, d: int, v: int, dtype: str, repeats: int) -> dict:
    """One row: median times, peak memories and errors of the heads at one size and dtype."""
    cdt = DTYPES[dtype]
    h, w, t = _inputs(n, d, v)
    heads = {name: make_head(name, cdt) for name in HEADS}
    fns = {name: (lambda f=f: _step(f, h, w, t)) for name, f in heads.items()}
    times = interleaved({**fns, "gemm": lambda: _three_gemms(h, w, cdt)}, repeats=repeats)
    loss_err, grad_err = _error_vs_fp32(h, w, t, cdt)
    del h, w, t
    row: dict = {"N": n, "d": d, "V": v, "dtype": dtype, "chunk_rows": chunk_rows(n, v, compute_dtype=cdt)}
    row |= {f"{name}_s": median(ts) for name, ts in times.items()}
    row |= {f"{name}_peak_bytes": peak_extra(name, n, d, v, dtype) for name in HEADS}
    # the leanest peer: the head other than ours with the smaller peak; time compared with it too
    row["peer"] = min(("naive", "compiled"), key=lambda name: row[f"{name}_peak_bytes"])
    row |= {"loss_rel_err": loss_err, "grad_rel_err": grad_err}
    return row


HEADER = (
    f"{'N':>5} {'d':>5} {'V':>6} {'dtype':>5} {'C':>5} | {'naive s':>8} {'compiled s':>10} {'fused s':>8} {'3-GEMM s':>8} | "
    f"{'fused/naive':>11} {'fused/comp':>10} {'fused/GEMMs':>11} | {'naive MiB':>9} {'compiled MiB':>12} {'fused MiB':>9} "
    f"{'fused/peer':>10} | {'loss err':>8} {'grad err':>8}"
)


def format_row(r: dict) -> str:
    """A table line; its ratios are computed from the rounded figures printed beside them."""
    s = {name: round(r[f"{name}_s"], 3) for name in (*HEADS, "gemm")}
    mib = {name: round(r[f"{name}_peak_bytes"] / 2**20) for name in HEADS}
    return (
        f"{r['N']:>5} {r['d']:>5} {r['V']:>6} {r['dtype']:>5} {r['chunk_rows']:>5} | {s['naive']:>8.3f} {s['compiled']:>10.3f} "
        f"{s['fused']:>8.3f} {s['gemm']:>8.3f} | {s['fused'] / s['naive']:>11.2f} {s['fused'] / s['compiled']:>10.2f} "
        f"{s['fused'] / s['gemm']:>11.2f} | {mib['naive']:>9} {mib['compiled']:>12} {mib['fused']:>9} "
        f"{mib['fused'] / max(mib[r['peer']], 1):>10.3f} | {r['loss_rel_err']:>8.1e} {r['grad_rel_err']:>8.1e}"
    )


def goals(rows: list[dict]) -> list[tuple[bool, str]]:
    """The goal lines at the goal size (none when it did not run), from the printed figures."""
    goal = next((r for r in rows if (r["N"], r["d"], r["V"], r["dtype"]) == GOAL_CONFIG), None)
    if goal is None:
        return []
    s = {name: round(goal[f"{name}_s"], 3) for name in (*HEADS, "gemm")}
    mib = {name: round(goal[f"{name}_peak_bytes"] / 2**20) for name in HEADS}
    peer = goal["peer"]
    at = f"at {GOAL_CONFIG[:3]} fp32"
    # A peer that adds no resident memory means the measurement failed, not a pass.
    valid = "" if mib[peer] > 0 else " (INVALID: the peer's peak read 0 MiB)"
    return [
        (s["fused"] / s["naive"] <= 0.5, f"fused/naive time {s['fused'] / s['naive']:.2f} <= 0.50 {at}"),
        (mib[peer] > 0 and mib["fused"] / mib[peer] <= 0.25, f"fused/{peer} (leanest peer) peak extra memory {mib['fused'] / max(mib[peer], 1):.3f} <= 0.25 {at}{valid}"),
        (s["fused"] / s[peer] <= 1.0, f"fused/{peer} (leanest peer) time {s['fused'] / s[peer]:.2f} <= 1.00 {at}"),
        (s["fused"] / s["gemm"] <= 1.15, f"fused / 3-GEMM time {s['fused'] / s['gemm']:.2f} <= 1.15 {at}"),
    ]


def context(rows: list[dict]) -> list[str]:
    """Lines beside the goals, from the same run: the GEMM floor and the bf16 mode at the goal size."""
    by_key = {(r["N"], r["d"], r["V"], r["dtype"]): r for r in rows}
    goal, bf16 = by_key.get(GOAL_CONFIG), by_key.get((*GOAL_CONFIG[:3], "bf16"))
    if goal is None:
        return []
    naive = round(goal["naive_s"], 3)
    lines = [f"floor: the three GEMMs alone take {round(goal['gemm_s'], 3) / naive:.2f}x the naive fp32 time"]
    if bf16 is not None:
        lines.append(
            f"bf16 mode: fused bf16 / naive fp32 time {round(bf16['fused_s'], 3) / naive:.2f}x, "
            f"loss relative error {bf16['loss_rel_err']:.1e}, weight-gradient relative error {bf16['grad_rel_err']:.1e}"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    ap.add_argument("--worker", nargs=5, metavar=("HEAD", "N", "D", "V", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        head, n, d, v, dtype = args.worker
        worker(head, int(n), int(d), int(v), dtype)
        return
    configs = [(512, 64, 1000)] if args.quick else CONFIGS
    print(f"machine: {describe_machine()}")
    one = "oneDNN inner product" if onednn_available() else "torch.mm (MKL)"
    print(f"fp32 logits product of the fused head: torch.mm (MKL) into a reused block when it takes several chunks, {one} for one")
    skip_bf16 = bf16_skip_reason()
    if skip_bf16:
        print(skip_bf16)
    print("C: tokens per chunk of the fused head (tying.functional.chunk_rows, default 64 MiB budget); peer: the naive head with the smaller peak")
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for n, d, v in configs:
        for dtype in DTYPES:
            if dtype == "bf16" and skip_bf16:
                continue
            rows.append(measure(n, d, v, dtype, args.repeats))
            print(format_row(rows[-1]), flush=True)
    print()
    status = report_goals(goals(rows), args.quick)
    for line in context(rows):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "bf16_skipped": skip_bf16, "rows": rows}, indent=2))
    raise SystemExit(status)


if __name__ == "__main__":
    main()
