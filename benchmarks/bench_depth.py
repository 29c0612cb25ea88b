"""Weights tied across depth: the cost of the depth tie, and the implicit layer against torchdeq.

One process, the trellis level of :mod:`tying.models.trellis` at the ``ptb-depth-*`` recipes'
sizes (width 200, kernel 2, a batch of 20 windows of 35 steps):

* **tie overhead**: a training step (forward through L = 8 levels, a squared-norm loss, backward,
  AdamW step) of L level modules tied by ``share_layers`` against the same L modules untied,
  both doing the same arithmetic (each level computes its own input injection), interleaved.
  The tie changes where gradients land (one tensor accumulates every level's) and how many
  tensors the optimizer steps; goal: at most 1.02x the untied step. Beside it, for information,
  the trellis as the model runs it (the injection computed once, which only the tie allows) and
  the whole language models of the ``ptb-depth-trellis`` and ``ptb-depth-tcn`` recipes
  (vocabulary 10,000): the TCN also computes an injection per level, so that ratio is the
  trellis's saving, not the tie's cost.
* **implicit layer**: ``tying.nn.Implicit`` against torchdeq's own DEQ core (``get_deq`` with
  the same fixed-point solver, relative tolerance, iteration caps and implicit backward) on the
  same block (the trellis level, a state of 20 x 35 x 400): forward iterations, backward
  iterations and the median time of a forward + backward, interleaved. ``Implicit`` calls
  torchdeq's solver functions and adds checks (finite residuals, convergence); goal: at most
  1.05x torchdeq's time (the ≤ 1.0x goal is for a solver of one's own; this one is torchdeq's).

    python benchmarks/bench_depth.py          # prints two tables and PASS/FAIL goal lines
    python benchmarks/bench_depth.py --quick  # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median, report_goals  # noqa: E402

import tying  # noqa: E402
from tying.machine import describe_machine  # noqa: E402
from tying.models import TrellisConfig, TrellisLanguageModel  # noqa: E402
from tying.models.trellis import LevelHistory, TrellisLevel  # noqa: E402
from tying.nn import Implicit  # noqa: E402

TIE_GOAL, DEQ_GOAL = 1.02, 1.05
SIZES = {
    "full": {"vocab": 10_000, "width": 200, "levels": 8, "batch": 20, "steps": 35, "tol": 1e-3, "max_iter": 50},
    "quick": {"vocab": 200, "width": 16, "levels": 3, "batch": 2, "steps": 6, "tol": 1e-3, "max_iter": 50},
}


class Stack(nn.Module):
    """L trellis levels applied in turn, each with its own injection (the same arithmetic tied or not)."""

    def __init__(self, width: int, levels: int, tied: bool, once: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.levels = nn.ModuleList(TrellisLevel(width, width, 2) for _ in range(levels))
        for level in self.levels:
            for p in level.parameters():
                nn.init.normal_(p, 0.0, 0.05)
        if tied:
            tying.share_layers(self, "levels")
        self.once = once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        history = LevelHistory(x.new_zeros(1, x.size(1), x.size(2)), x.new_zeros(1, x.size(1), x.size(2)))
        z = x.new_zeros(*x.shape[:2], 2 * x.size(2))
        injection = self.levels[0].inject(x, history.hidden)
        for level in self.levels:
            z = level(z, injection if self.once else level.inject(x, history.hidden), history)
        return z


def train_step(model: nn.Module, run: Any, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    run(model).backward()
    opt.step()


def tie_overhead(s: dict[str, Any], repeats: int) -> list[dict[str, Any]]:
    x = torch.randn(s["steps"], s["batch"], s["width"], generator=torch.Generator().manual_seed(1))
    tokens = torch.randint(0, s["vocab"], (s["steps"] + 1, s["batch"]), generator=torch.Generator().manual_seed(2))
    base = TrellisConfig(s["vocab"], s["width"], s["width"], levels=s["levels"], kernel_size=2)
    models: dict[str, tuple[nn.Module, Any]] = {
        "untied levels": (Stack(s["width"], s["levels"], tied=False), lambda m: m(x).square().mean()),
        "tied levels (share_layers)": (Stack(s["width"], s["levels"], tied=True), lambda m: m(x).square().mean()),
        "tied, injection once": (Stack(s["width"], s["levels"], tied=True, once=True), lambda m: m(x).square().mean()),
    }
    for name, depth in (("LM: TCN (ptb-depth-tcn)", "untied"), ("LM: trellis (ptb-depth-trellis)", "tied")):
        torch.manual_seed(0)
        lm = TrellisLanguageModel(replace(base, depth=depth))  # type: ignore[arg-type]
        models[name] = (lm, lambda m: nn.functional.cross_entropy(m(tokens[:-1], m.init_state(s["batch"]))[0].flatten(0, 1), tokens[1:].flatten()))
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, (m, _) in models.items()}
    times = interleaved({name: (lambda name=name: train_step(models[name][0], models[name][1], opts[name])) for name in models}, repeats, warmup=2)
    refs = {"untied levels": "untied levels", "tied levels (share_layers)": "untied levels", "tied, injection once": "untied levels"}
    return [
        {"model": name, "unique_parameters": tying.summary(m).unique_parameters, "step_s": times[name],
         "ratio": median(times[name]) / median(times[refs.get(name, "LM: TCN (ptb-depth-tcn)")])}
        for name, (m, _) in models.items()
    ]  # fmt: skip


def implicit_vs_torchdeq(s: dict[str, Any], repeats: int) -> list[dict[str, Any]]:
    from torchdeq import get_deq

    torch.manual_seed(0)
    level = TrellisLevel(s["width"], s["width"], 2)
    for p in level.parameters():
        nn.init.normal_(p, 0.0, 0.05)
    x = torch.randn(s["steps"], s["batch"], s["width"], generator=torch.Generator().manual_seed(1))
    zeros = x.new_zeros(1, s["batch"], s["width"])
    history = LevelHistory(zeros, zeros)

    class Block(nn.Module):  # f(z, x) on a batch-first state (B, T, 2H)
        def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return level(z.transpose(0, 1), level.inject(x, zeros), history).transpose(0, 1)

    block, z0 = Block(), x.new_zeros(s["batch"], s["steps"], 2 * s["width"])
    ours = Implicit(block, solver="fixed_point", tol=s["tol"], max_iter=s["max_iter"])
    theirs = get_deq(f_solver="fixed_point_iter", b_solver="fixed_point_iter", f_max_iter=s["max_iter"], b_max_iter=s["max_iter"],
                     f_tol=s["tol"], b_tol=s["tol"], f_stop_mode="rel", b_stop_mode="rel", ift=True)  # fmt: skip
    stats: dict[str, Any] = {}

    def run_ours() -> None:
        ours(x, z0).square().mean().backward()
        stats["tying.nn.Implicit"] = (ours.last_stats.iterations, ours.last_stats.backward_iterations)  # type: ignore[union-attr]

    def run_theirs() -> None:
        out, info = theirs(lambda z: block(z, x), z0)
        out[-1].square().mean().backward()
        stats["torchdeq get_deq"] = (int(info["nstep"].max()), None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        times = interleaved({"tying.nn.Implicit": run_ours, "torchdeq get_deq": run_theirs}, repeats, warmup=2)
    return [
        {"solver": name, "iterations": stats[name][0], "backward_iterations": stats[name][1], "step_s": times[name],
         "ratio": median(times[name]) / median(times["torchdeq get_deq"])}
        for name in times
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args()
    s = SIZES["quick" if args.quick else "full"]
    print(f"machine: {describe_machine()}")
    print(f"sizes: {s}; {args.repeats} repeats")
    ties = tie_overhead(s, args.repeats)
    print(f"\n{'training step (L=' + str(s['levels']) + ')':<32} | {'unique params':>13} | {'step ms':>8} | ratio")
    print("-" * 72)
    for r in ties:
        ref = "untied levels" if not r["model"].startswith("LM") else "TCN"
        print(f"{r['model']:<32} | {r['unique_parameters']:>13,} | {median(r['step_s']) * 1e3:>8.2f} | {r['ratio']:.3f}x {ref}")
    deq = implicit_vs_torchdeq(s, args.repeats)
    print(f"\n{'fixed point + implicit backward':<32} | {'fwd iters':>9} | {'bwd iters':>9} | {'fwd+bwd ms':>10} | ratio")
    print("-" * 80)
    for r in deq:
        bwd = "-" if r["backward_iterations"] is None else str(r["backward_iterations"])
        print(f"{r['solver']:<32} | {r['iterations']:>9} | {bwd:>9} | {median(r['step_s']) * 1e3:>10.2f} | {r['ratio']:.3f}x torchdeq")
    print()
    tied = ties[1]["ratio"]
    goals = [(tied <= TIE_GOAL, f"tied levels step time {tied:.3f}x the untied levels' <= {TIE_GOAL}x")]
    goals.append((deq[0]["ratio"] <= DEQ_GOAL, f"Implicit forward+backward {deq[0]['ratio']:.3f}x torchdeq's DEQ core <= {DEQ_GOAL}x"))
    goals.append((deq[0]["iterations"] == deq[1]["iterations"], f"the same forward iterations ({deq[0]['iterations']} and {deq[1]['iterations']})"))
    status = report_goals(goals, args.quick)
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "sizes": s, "ties": ties, "implicit": deq}, indent=2))
    raise SystemExit(status)


if __name__ == "__main__":
    main()
