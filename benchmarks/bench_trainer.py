"""LSTM LM training throughput: tying's trainer against a plain reference loop.

The reference loop is written the way pytorch/examples ``word_language_model`` writes it
(``repackage_hidden``, ``model.zero_grad()``, ``clip_grad_norm_`` at 0.25, a manual SGD update
``p.data.add_(p.grad, alpha=-lr)``); tying's :class:`~tying.training.Trainer` runs the same model
(the tied 2x200 LSTM LM, batch 20 x 35 BPTT steps, V = 10,000 synthetic tokens) with the variants
below. Each variant runs in a fresh process (the allocator is set by the environment before the
process starts), the variants alternate round after round, and the median tokens/s is reported.

* ``reference``: the reference loop, default glibc malloc;
* ``trainer``: :class:`~tying.training.Trainer`, default glibc malloc;
* ``trainer+fused``: the same with the fused output + cross-entropy head (:func:`tying.training.fused_lm_loss`);
* ``trainer+malloc``: the trainer with ``GLIBC_TUNABLES`` raising glibc's mmap and trim
  thresholds, so the large per-step buffers are reused instead of mapped and unmapped each step;
* ``trainer+fused+malloc``: both.

    python benchmarks/bench_trainer.py            # prints a table and the PASS/FAIL goal line
    python benchmarks/bench_trainer.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median  # noqa: E402

from tying.machine import describe_machine  # noqa: E402

TUNED_MALLOC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
VARIANTS = {
    "reference": {},
    "trainer": {},
    "trainer+fused": {},
    "trainer+malloc": {"GLIBC_TUNABLES": TUNED_MALLOC},
    "trainer+fused+malloc": {"GLIBC_TUNABLES": TUNED_MALLOC},
}
GOAL = 1.15  # tying's trainer (best honest variant) vs the reference loop


def _model_and_data(vocab: int, size: int, windows: int, bptt: int, batch: int):
    from tying.models import LSTMConfig, LSTMLanguageModel

    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab, size, size, 2, dropout=0.2, tie=True))
    stream = torch.randint(0, vocab, (windows * bptt * batch + batch,), generator=torch.Generator().manual_seed(0))
    return model, stream


def _reference(model: nn.Module, stream: torch.Tensor, batch: int, bptt: int, lr: float = 20.0) -> tuple[int, float]:
    from tying.data import batchify

    def repackage_hidden(h):
        return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)

    data = batchify(stream, batch)
    model.train()
    hidden = model.init_state(batch)
    tokens, start = 0, time.perf_counter()
    for i in range(0, data.size(0) - 1, bptt):
        n = min(bptt, data.size(0) - 1 - i)
        inputs, targets = data[i : i + n], data[i + 1 : i + 1 + n].reshape(-1)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(inputs, hidden)
        loss = F.cross_entropy(output.view(-1, output.size(-1)), targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        tokens += targets.numel()
    return tokens, time.perf_counter() - start


def _trainer(model: nn.Module, stream: torch.Tensor, batch: int, bptt: int, fused: bool) -> tuple[int, float]:
    from tying.training import Trainer, TrainConfig, fused_lm_loss, lm_loss

    config = TrainConfig(epochs=1, batch_size=batch, bptt=bptt)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, stream, stream[:100], None, config, tmp, loss_fn=fused_lm_loss if fused else lm_loss)
        start = time.perf_counter()
        _, tokens = trainer.train_epoch(1)
        return tokens, time.perf_counter() - start


def worker(variant: str, vocab: int, size: int, windows: int, threads: int) -> None:
    """One variant in this process: a short warm-up pass, then the timed pass; prints tokens/s."""
    torch.set_num_threads(threads)
    batch, bptt = 20, 35
    model, stream = _model_and_data(vocab, size, windows, bptt, batch)
    warm = stream[: 3 * bptt * batch + batch]
    run = _reference if variant == "reference" else _trainer
    kwargs = {} if variant == "reference" else {"fused": "fused" in variant}
    run(model, warm, batch, bptt, **kwargs)
    tokens, seconds = run(model, stream, batch, bptt, **kwargs)
    print(json.dumps({"tokens_per_s": tokens / seconds}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--windows", type=int, default=60, help="timed training windows per process")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--quick", action="store_true", help="a small model and few windows, for a smoke test")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--worker", metavar="VARIANT", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    vocab, size, windows = (500, 32, 5) if args.quick else (10_000, 200, args.windows)
    if args.worker:
        worker(args.worker, vocab, size, windows, args.threads)
        return
    print(f"machine: {describe_machine()}")
    print(f"tied {size}x2 LSTM LM, V={vocab}, batch 20 x 35 BPTT steps, {windows} timed windows per process, {args.rounds} rounds")
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant, env in VARIANTS.items():
            argv = [sys.executable, __file__, "--worker", variant, "--threads", str(args.threads), "--windows", str(windows)]
            argv += ["--quick"] if args.quick else []
            env = {**{k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}, **env}
            out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"])
    ref = median(results["reference"])
    print(f"{'variant':<20} | {'tokens/s':>9} | {'vs reference':>12}")
    print("-" * 47)
    for variant, xs in results.items():
        print(f"{variant:<20} | {median(xs):>9,.0f} | {median(xs) / ref:>11.2f}x")
    best = max((v for v in VARIANTS if v != "reference"), key=lambda v: median(results[v]))
    ratio = median(results[best]) / ref
    print()
    print(f"{'PASS' if ratio >= GOAL else 'FAIL'}: best trainer variant ({best}) {ratio:.2f}x the reference loop >= {GOAL:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "tokens_per_s": results}, indent=2))


if __name__ == "__main__":
    main()
