"""Which fixed-point solver finds the DEQ trellis's equilibrium (docs/depth.md, "Choosing the solver").

Trains the ``ptb-depth-deq`` model (Anderson, as torchdeq's DEQ models default to, relative
tolerance 1e-3, 40 iterations; the non-convergence warning silenced, the failures counted) for
80 windows of Penn Treebank, so the gates have left their initial values, then solves one
training window (eval mode, the carried state zero) with each of torchdeq's solvers at several
iteration caps and prints the iterations used and the relative residual reached. Iteration
counts and residuals, not times: they do not depend on the machine's load. With ``--checkpoint``
it reads a trained model (a ``ptb-depth-deq`` run's ``best.safetensors``) instead of training.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/deq_solvers.py --data-root ~/tying-data --out results/depth/solvers.md
    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/deq_solvers.py --data-root ~/tying-data \
      --checkpoint results/lm/ptb-depth/ptb-depth-deq/best.safetensors
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import tying

from tying.data.files import resolve_corpus
from tying.machine import describe_code, describe_machine
from tying.models import TrellisConfig, TrellisLanguageModel
from tying.nn import Implicit
from tying.tasks.lm import load_corpus
from tying.tasks.lm.batching import BPTTBatches, batchify
from tying.tasks.lm.task import detach_state

SOLVERS = ("anderson", "broyden", "fixed_point")
CAPS = (30, 45, 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, help="folder holding ptb/ (default $TYING_DATA_ROOT or ~/tying-data)")
    ap.add_argument("--batches", type=int, default=80)
    ap.add_argument("--checkpoint", type=Path, help="a trained ptb-depth-deq model to read instead of training")
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = ap.parse_args()
    corpus = load_corpus(resolve_corpus("ptb", args.data_root))
    vocab = len(corpus.dictionary)
    torch.manual_seed(1111)
    config = TrellisConfig(vocab, 200, 200, levels=1, depth="equilibrium", solver="anderson", max_iter=40, input_dropout=0.2, hidden_dropout=0.1, output_dropout=0.2)
    model = TrellisLanguageModel(config)
    assert model.equilibrium is not None
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.0)
    windows = BPTTBatches(batchify(corpus.train, 20), 35)
    state = model.init_state(20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(0 if args.checkpoint else args.batches):
            inputs, targets = windows[i]
            logits, state = model(inputs, detach_state(state))
            F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    failures = dict(model.equilibrium.failures)
    if args.checkpoint:
        tying.load(model, args.checkpoint)
        trained = f"the trained model {args.checkpoint}"
    else:
        trained = (
            f"ptb-depth-deq's model after {args.batches} training windows (Anderson, 40 iterations: forward solves above tol "
            f"{failures['forward']} of {args.batches}, backward {failures['backward']})"
        )
    model.eval()
    inputs, _ = windows[args.batches]
    lines = [
        f"machine: {describe_machine()}; code: {describe_code()}",
        f"{trained}; one window of 20 x 35 tokens, eval mode",
        f"{'solver':<12} | {'cap':>4} | {'iterations':>10} | {'relative residual':>17}",
        "-" * 52,
    ]
    for solver in SOLVERS:
        for cap in CAPS:
            model.equilibrium = Implicit(model.equilibrium.f, solver=solver, tol=1e-3, max_iter=cap)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                model(inputs, model.init_state(20))
            stats = model.equilibrium.last_stats
            assert stats is not None
            lines.append(f"{solver:<12} | {cap:>4} | {stats.iterations:>10} | {stats.residual:>17.2e}")
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("```text\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
