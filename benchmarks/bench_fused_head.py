"""Fused tied output + cross-entropy vs the naive ``F.linear`` + ``F.cross_entropy`` head.

For each (N, d, V) and dtype, in one process: forward+backward time of both heads, interleaved,
median of the repeats, and the time of the three GEMMs of 2·N·d·V FLOPs that any exact method
must do (measured on the same GEMM path the fused head uses). Peak extra memory is measured as
process peak RSS above the inputs, in a fresh subprocess per (configuration, head).

    python benchmarks/bench_fused_head.py            # prints a table and PASS/FAIL goal lines
    python benchmarks/bench_fused_head.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median  # noqa: E402

from tying.functional import _add_grad_weight, _logits, onednn_available, tied_linear_cross_entropy  # noqa: E402
from tying.machine import describe_machine  # noqa: E402

CONFIGS = [(8192, 512, 10000), (8192, 512, 33278), (4096, 1024, 50257)]
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def _inputs(n: int, d: int, v: int):
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(n, d, generator=g) * 0.5).requires_grad_()
    w = (torch.randn(v, d, generator=g) * 0.05).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    return h, w, t


def _step(head: str, h, w, t, compute_dtype) -> torch.Tensor:
    h.grad = w.grad = None
    if head == "naive":
        if compute_dtype is None:
            loss = F.cross_entropy(F.linear(h, w), t)
        else:  # the same reduced-precision GEMMs, done the obvious way
            loss = F.cross_entropy(F.linear(h.to(compute_dtype), w.to(compute_dtype)).float(), t)
    else:
        loss = tied_linear_cross_entropy(h, w, t, compute_dtype=compute_dtype)
    loss.backward()
    return loss.detach()


def _error_vs_fp32(h, w, t, compute_dtype) -> tuple[float, float]:
    """Relative error of the fused head's loss and weight gradient against the naive fp32 head."""
    ref_loss = _step("naive", h, w, t, None)
    ref_grad = w.grad.clone()
    loss = _step("fused", h, w, t, compute_dtype)
    return abs(float(loss - ref_loss)) / abs(float(ref_loss)), float((w.grad - ref_grad).norm() / ref_grad.norm())


def _three_gemms(h, w, compute_dtype) -> None:
    """The three products any exact head computes, unchunked, with the fused head's kernels."""
    cdt = compute_dtype or h.dtype
    hh, ww = h.detach().to(cdt), w.detach().to(cdt)
    z = _logits(hh, ww)
    z @ ww
    _add_grad_weight(torch.zeros(w.shape), z, hh)


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM). Unlike ``ru_maxrss``, which a child
    inherits from its parent's peak across fork/vfork + exec, VmHWM belongs to the new address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def worker(head: str, n: int, d: int, v: int, dtype: str) -> None:
    """Run one forward+backward in this (fresh) process; print peak RSS above the inputs."""
    h, w, t = _inputs(n, d, v)
    _step("fused", *_inputs(8, 4, 16), DTYPES[dtype])  # load kernels before the baseline
    base = _peak_rss()
    _step(head, h, w, t, DTYPES[dtype])
    print(json.dumps({"peak_extra_bytes": _peak_rss() - base}))


def peak_extra(head: str, n: int, d: int, v: int, dtype: str) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", head, str(n), str(d), str(v), dtype],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_bytes"]


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
    print(f"fp32 logits product of the fused head: {'oneDNN inner product' if onednn_available() else 'torch.mm (MKL)'}")
    rows = []
    header = f"{'N':>5} {'d':>5} {'V':>6} {'dtype':>5} | {'naive s':>8} {'fused s':>8} {'3-GEMM s':>8} | {'time ratio':>10} {'vs 3 GEMMs':>10} | {'naive MiB':>9} {'fused MiB':>9} {'mem ratio':>9} | {'loss err':>8} {'grad err':>8}"
    print(header)
    print("-" * len(header))
    for n, d, v in configs:
        for dtype, cdt in DTYPES.items():
            h, w, t = _inputs(n, d, v)
            times = interleaved(
                {
                    "naive": lambda: _step("naive", h, w, t, cdt),
                    "fused": lambda: _step("fused", h, w, t, cdt),
                    "gemm": lambda: _three_gemms(h, w, cdt),
                },
                repeats=args.repeats,
            )
            loss_err, grad_err = _error_vs_fp32(h, w, t, cdt)
            del h, w, t
            mem = {head: peak_extra(head, n, d, v, dtype) for head in ("naive", "fused")}
            row = {
                "N": n, "d": d, "V": v, "dtype": dtype,
                "naive_s": median(times["naive"]), "fused_s": median(times["fused"]), "gemm_s": median(times["gemm"]),
                "naive_peak_bytes": mem["naive"], "fused_peak_bytes": mem["fused"],
                "loss_rel_err": loss_err, "grad_rel_err": grad_err,
            }
            row["time_ratio"] = row["fused_s"] / row["naive_s"]
            row["vs_gemm"] = row["fused_s"] / row["gemm_s"]
            row["mem_ratio"] = row["fused_peak_bytes"] / max(row["naive_peak_bytes"], 1)
            rows.append(row)
            print(
                f"{n:>5} {d:>5} {v:>6} {dtype:>5} | {row['naive_s']:>8.3f} {row['fused_s']:>8.3f} {row['gemm_s']:>8.3f} | "
                f"{row['time_ratio']:>10.2f} {row['vs_gemm']:>10.2f} | {mem['naive'] / 2**20:>9.0f} {mem['fused'] / 2**20:>9.0f} {row['mem_ratio']:>9.3f} | {loss_err:>8.1e} {grad_err:>8.1e}",
                flush=True,
            )
    goal = next((r for r in rows if (r["N"], r["d"], r["V"], r["dtype"]) == (8192, 512, 33278, "fp32")), None)
    if goal is not None:
        print()
        for ok, text in (
            (goal["time_ratio"] <= 0.5, f"fused/naive time {goal['time_ratio']:.2f} <= 0.50 at (8192, 512, 33278) fp32"),
            # A naive head that adds no resident memory means the measurement failed, not a pass.
            (goal["naive_peak_bytes"] > 0 and goal["mem_ratio"] <= 1 / 8, f"fused/naive peak extra memory {goal['mem_ratio']:.3f} <= 0.125"
             + ("" if goal["naive_peak_bytes"] > 0 else " (INVALID: the naive head's peak read 0 bytes)")),
            (goal["vs_gemm"] <= 1.15, f"fused / 3-GEMM time {goal['vs_gemm']:.2f} <= 1.15"),
        ):
            print(f"{'PASS' if ok else 'FAIL'}: {text}")
        # Context for the time goal, from the same run: the GEMM floor and the bf16 mode.
        print(f"floor: the three GEMMs alone take {goal['gemm_s'] / goal['naive_s']:.2f}x the naive fp32 time")
        bf16 = next((r for r in rows if (r["N"], r["d"], r["V"], r["dtype"]) == (8192, 512, 33278, "bf16")), None)
        if bf16 is not None:
            print(
                f"bf16 mode: fused bf16 / naive fp32 time {bf16['fused_s'] / goal['naive_s']:.2f}x, "
                f"loss relative error {bf16['loss_rel_err']:.1e}, weight-gradient relative error {bf16['grad_rel_err']:.1e}"
            )
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
