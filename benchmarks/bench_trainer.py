"""LSTM LM training throughput: tying's training engine against today's baselines.

Three loops train the same model (the tied 2x200 LSTM LM, batch 20 x 35 BPTT steps, V = 10,000
synthetic tokens, SGD lr 20, clipping at 0.25):

* ``reference``: the loop as pytorch/examples ``word_language_model`` writes it
  (``repackage_hidden``, ``model.zero_grad()``, ``clip_grad_norm_``, a manual SGD update
  ``p.data.add_(p.grad, alpha=-lr)``);
* ``trainer-0.1``: a faithful copy of the LSTM-only ``Trainer.train_epoch`` of tying 0.1, which
  the engine replaced (kept here, and only here, as the baseline the engine must keep up with);
* ``engine``: :class:`tying.training.Trainer` running the ``lm`` task (:mod:`tying.tasks.lm`),
  timed by the engine's own per-epoch ``tokens_per_s`` (training only), and ``engine+fused``
  with the fused output + cross-entropy head (``loss.fused = true``).

Each variant runs in a fresh process (default glibc malloc, or ``+malloc``: ``GLIBC_TUNABLES``
raising glibc's mmap and trim thresholds, so the large per-step buffers are reused), the
variants alternate round after round, and the median tokens/s is reported.

    python benchmarks/bench_trainer.py            # prints a table and the PASS/FAIL goal lines
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
from _common import median, report_goals  # noqa: E402

from tying.machine import describe_machine  # noqa: E402

TUNED_MALLOC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
VARIANTS = {
    "reference": {},
    "trainer-0.1": {},
    "engine": {},
    "engine+fused": {},
    "engine+malloc": {"GLIBC_TUNABLES": TUNED_MALLOC},
    "engine+fused+malloc": {"GLIBC_TUNABLES": TUNED_MALLOC},
}
GOAL_REFERENCE = 1.15  # the engine (best variant) vs the pytorch/examples loop, as for tying 0.1's trainer
GOAL_BASELINE = 0.98  # the engine vs tying 0.1's trainer, both with default malloc


def _model_and_data(vocab: int, size: int, windows: int, bptt: int, batch: int):
    from tying.models import LSTMConfig, LSTMLanguageModel

    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab, size, size, 2, dropout=0.2, tie=True))
    stream = torch.randint(0, vocab, (windows * bptt * batch + batch,), generator=torch.Generator().manual_seed(0))
    return model, stream


def _reference(model: nn.Module, stream: torch.Tensor, batch: int, bptt: int, lr: float = 20.0) -> tuple[int, float]:
    from tying.tasks.lm import batchify

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


def _trainer_0_1(model: nn.Module, stream: torch.Tensor, batch: int, bptt: int, **_: object) -> tuple[int, float]:
    """tying 0.1's ``Trainer.train_epoch`` (LSTM only), copied as it was: one epoch of windows,
    the state detached between them, ``lm_loss``, zero_grad(set_to_none), clip, SGD step, and the
    (disabled) rich progress bar updated per window."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from tying.tasks.lm import BPTTBatches, batchify, detach_state, lm_loss

    optimizer = torch.optim.SGD(model.parameters(), lr=20.0, momentum=0.0, weight_decay=0.0)
    train_data = batchify(stream, batch)
    start = time.perf_counter()
    model.train()
    batches = BPTTBatches(train_data, bptt)
    n = len(batches)
    first = 0
    params = [p for p in model.parameters() if p.requires_grad]
    state = model.init_state(batch)
    total, tokens = 0.0, 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=None, transient=True, disable=True) as progress:
        task = progress.add_task("epoch 1", total=n)
        for k in range(first, first + n):
            inputs, targets = batches[k % len(batches)]
            state = detach_state(state)
            loss, state = lm_loss(model, inputs, targets, state)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 0.25)
            optimizer.step()
            total += loss.item() * targets.numel()
            tokens += targets.numel()
            progress.update(task, advance=1, description=f"epoch 1 loss {total / tokens:.3f}")
    return tokens, time.perf_counter() - start


def _engine(model: nn.Module, stream: torch.Tensor, batch: int, bptt: int, fused: bool = False) -> tuple[int, float]:
    """One epoch through the engine; the time is its own training time (validation excluded)."""
    from tying.tasks.lm import LMDataset, LMTask, LMTrain, LossConfig, LSTMModel, batchify
    from tying.training import Trainer

    train = LMTrain(epochs=1, batch_size=batch, bptt=bptt, optimizer="sgd", lr=20.0, clip=0.25, lr_schedule="plateau")
    task = LMTask({"model": LSTMModel(), "loss": LossConfig(fused=fused), "train": train})
    small = batchify(stream[: 20 * bptt], 10)
    data = LMDataset(corpus=None, train=batchify(stream, batch), valid=small, test=small[:0])  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        history = Trainer(task, model, data, tmp).fit().history
    return history[0]["train_tokens"], history[0]["train_s"]


def worker(variant: str, vocab: int, size: int, windows: int, threads: int) -> None:
    """One variant in this process: a short warm-up pass, then the timed pass; prints tokens/s."""
    torch.set_num_threads(threads)
    batch, bptt = 20, 35
    model, stream = _model_and_data(vocab, size, windows, bptt, batch)
    warm = stream[: 3 * bptt * batch + batch]
    run = {"reference": _reference, "trainer-0.1": _trainer_0_1}.get(variant, _engine)
    kwargs = {"fused": True} if "fused" in variant else {}
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
    engines = [v for v in VARIANTS if v.startswith("engine")]
    best = max(engines, key=lambda v: median(results[v]))
    vs_reference = median(results[best]) / ref
    vs_baseline = median(results["engine"]) / median(results["trainer-0.1"])
    print()
    status = report_goals(
        [
            (vs_baseline >= GOAL_BASELINE, f"engine {vs_baseline:.2f}x tying 0.1's trainer >= {GOAL_BASELINE:.2f}x"),
            (vs_reference >= GOAL_REFERENCE, f"best engine variant ({best}) {vs_reference:.2f}x the reference loop >= {GOAL_REFERENCE:.2f}x"),
        ],
        args.quick,
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "tokens_per_s": results}, indent=2))
    raise SystemExit(status)


if __name__ == "__main__":
    main()
