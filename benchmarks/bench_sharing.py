"""Cross-layer sharing (``tying.share_layers``): training-step time and checkpoint size.

One process, the Transformer LM of :mod:`tying.models.transformer` with N blocks:

* **step time**: a training step (forward, cross-entropy, backward, AdamW step) of the model whose
  N blocks use M parameter sets (``cycle_rev`` with M = N/2, the paper's headline layout, and
  ``all`` with M = 1) against the same model unshared, interleaved; the table prints each model's
  median step time and the ratio of those printed medians. Sharing does the same arithmetic (every block still
  runs), plus the accumulation of each set's gradients over its uses, and an optimizer step over
  fewer tensors: the goal is at most 1.02x the unshared step.
* **checkpoint bytes**: the tensor data of each model's ``tying.save`` file (file size minus the
  safetensors header) against the bytes of its unique parameters
  (``tying.summary(model).unique_bytes``): each set stored once gives 1.0, a copy per layer would
  give up to N/M; goal at most 1.001. The header (tensor index, tie spec and alias table, which
  grow with the number of tied tensors, not with their size) is shown beside it, with the whole
  file's ratio.

    python benchmarks/bench_sharing.py          # prints a table and PASS/FAIL goal lines
    python benchmarks/bench_sharing.py --quick  # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median, report_goals  # noqa: E402

import tying  # noqa: E402
from tying.machine import describe_machine  # noqa: E402
from tying.models import TransformerConfig, TransformerLanguageModel  # noqa: E402

TIME_GOAL = 1.02
BYTES_GOAL = 1.001
SIZES = {
    "full": {"vocab": 10_000, "width": 128, "layers": 12, "heads": 4, "batch": 8, "seq": 64},
    "quick": {"vocab": 500, "width": 32, "layers": 4, "heads": 2, "batch": 4, "seq": 16},
}


def build(config: TransformerConfig, unique: int | None, strategy: str) -> nn.Module:
    torch.manual_seed(0)
    model = TransformerLanguageModel(config)
    if unique is not None:
        tying.share_layers(model, "blocks", unique=unique, strategy=strategy)  # type: ignore[arg-type]
    return model


def step(model: nn.Module, tokens: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args()
    s = SIZES["quick" if args.quick else "full"]
    n = s["layers"]
    config = TransformerConfig(s["vocab"], s["seq"], s["width"], n, s["heads"], dropout=0.0)
    print(f"machine: {describe_machine()}")
    print(f"sizes: {s}; {args.repeats} repeats")

    variants = {"unshared": (None, "all"), f"cycle_rev M={n // 2}": (n // 2, "cycle_rev"), "all M=1": (1, "all")}
    models = {name: build(config, m, strategy) for name, (m, strategy) in variants.items()}
    opts = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}
    tokens = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1), generator=torch.Generator().manual_seed(0))
    times = interleaved(
        {name: (lambda name=name: step(models[name], tokens, opts[name])) for name in models}, repeats=args.repeats, warmup=2
    )

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            tying.verify(model)
            counts = tying.summary(model)
            path = tying.save(model, Path(tmp) / f"{name.replace(' ', '_')}.safetensors")
            size, header = path.stat().st_size, 8 + tying.read_checkpoint(path).header_size
            rows.append(
                {
                    "model": name,
                    "unique_parameters": counts.unique_parameters,
                    "step_s": times[name],
                    "time_ratio": median(times[name]) / median(times["unshared"]),
                    "ties": len(tying.get_spec(model).ties),
                    "file_bytes": size,
                    "header_bytes": header,
                    "unique_bytes": counts.unique_bytes,
                    "data_ratio": (size - header) / counts.unique_bytes,
                    "file_ratio": size / counts.unique_bytes,
                }
            )
    print(
        f"{'model (N=' + str(n) + ')':<16} | {'unique params':>13} {'ties':>4} | {'step ms':>8} {'vs unshared':>11} | "
        f"{'unique bytes':>12} {'data ratio':>10} | {'header bytes':>12} {'file ratio':>10}"
    )
    print("-" * 112)
    for r in rows:
        print(
            f"{r['model']:<16} | {r['unique_parameters']:>13,} {r['ties']:>4} | {median(r['step_s']) * 1e3:>8.2f} {r['time_ratio']:>10.3f}x | "
            f"{r['unique_bytes']:>12,} {r['data_ratio']:>10.6f} | {r['header_bytes']:>12,} {r['file_ratio']:>10.5f}"
        )
    print()
    goals = [(r["time_ratio"] <= TIME_GOAL, f"{r['model']} step time {r['time_ratio']:.3f}x unshared <= {TIME_GOAL}x") for r in rows[1:]]
    goals += [(r["data_ratio"] <= BYTES_GOAL, f"{r['model']} checkpoint data {r['data_ratio']:.6f}x unique-parameter bytes <= {BYTES_GOAL}x") for r in rows[1:]]
    status = report_goals(goals, args.quick)
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "sizes": s, "rows": rows}, indent=2))
    raise SystemExit(status)


if __name__ == "__main__":
    main()
