"""Segmentation micro-nets: frames/s on one core, shared context block against unshared, and the U-Net.

One process, one thread, inference in eval mode under ``torch.inference_mode`` on a batch of one
RGB image (a camera frame) at 256x256 pixels, the recipes' models (``tying.models.MAVNet`` with
``share`` none / conv / all, the wide shared net, and ``tying.models.UNet``), timed interleaved;
the table prints each model's median frame time, frames/s and the ratio to the unshared net's
frames/s. Sharing runs the same convolutions (one weight read at four dilations), so the goal is
that the shared nets keep at least 0.95x the unshared net's frames/s. The training-step time of
each (forward, focal loss, backward, AdamW step on a batch of 16 images at 64x64, the recipes'
setting) is printed beside it.

    python benchmarks/bench_segmentation.py          # prints a table and PASS/FAIL goal lines
    python benchmarks/bench_segmentation.py --quick  # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median, report_goals  # noqa: E402

import tying  # noqa: E402
from tying.machine import describe_machine  # noqa: E402
from tying.models import MAVNet, MAVNetConfig, UNet, UNetConfig  # noqa: E402
from tying.tasks.segmentation import focal_loss  # noqa: E402

FPS_GOAL = 0.95
SIZES = {"full": {"frame": 256, "train": 64, "batch": 16}, "quick": {"frame": 64, "train": 32, "batch": 4}}
MODELS = {
    "unshared": lambda: MAVNet(MAVNetConfig()),
    "shared conv": lambda: MAVNet(MAVNetConfig(share="conv")),
    "shared conv+norm": lambda: MAVNet(MAVNetConfig(share="all")),
    "shared wide C=19": lambda: MAVNet(MAVNetConfig(context=19, share="conv")),
    "U-Net base 16": lambda: UNet(UNetConfig()),
}


def train_step(model: nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, masks: torch.Tensor) -> None:
    loss = focal_loss(model(images), masks)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = SIZES["quick" if args.quick else "full"]
    print(f"machine: {describe_machine()}")
    print(f"sizes: {s}; {args.repeats} repeats; torch threads: {torch.get_num_threads()}")
    torch.manual_seed(0)
    models = {name: build().eval() for name, build in MODELS.items()}
    frame = torch.rand(1, 3, s["frame"], s["frame"])

    def infer(model: nn.Module) -> None:
        with torch.inference_mode():
            model(frame)

    frames = interleaved({name: (lambda m=m: infer(m)) for name, m in models.items()}, repeats=args.repeats, warmup=3)
    images, masks = torch.rand(s["batch"], 3, s["train"], s["train"]), torch.randint(0, 3, (s["batch"], s["train"], s["train"]))
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in models.items()}
    for m in models.values():
        m.train()
    steps = interleaved(
        {name: (lambda name=name: train_step(models[name], opts[name], images, masks)) for name in models},
        repeats=max(5, args.repeats // 3), warmup=2,
    )  # fmt: skip
    base = 1 / median(frames["unshared"])
    rows = [
        {
            "model": name,
            "unique_parameters": tying.summary(models[name]).unique_parameters,
            "frame_s": frames[name],
            "fps": 1 / median(frames[name]),
            "fps_ratio": (1 / median(frames[name])) / base,
            "train_step_s": steps[name],
        }
        for name in models
    ]
    print(f"{'model':<18} | {'unique params':>13} | {'frame ms':>9} {'frames/s':>9} {'vs unshared':>11} | {'train step ms':>13}")
    print("-" * 86)
    for r in rows:
        print(
            f"{r['model']:<18} | {r['unique_parameters']:>13,} | {median(r['frame_s']) * 1e3:>9.2f} {r['fps']:>9.1f} "
            f"{r['fps_ratio']:>10.3f}x | {median(r['train_step_s']) * 1e3:>13.1f}"
        )
    print()
    goals = [(r["fps_ratio"] >= FPS_GOAL, f"{r['model']} frames/s {r['fps_ratio']:.3f}x the unshared net's >= {FPS_GOAL}x") for r in rows[1:3]]
    status = report_goals(goals, args.quick)
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "sizes": s, "rows": rows}, indent=2))
    raise SystemExit(status)


if __name__ == "__main__":
    main()
