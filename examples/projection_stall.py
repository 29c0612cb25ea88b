"""Why Press & Wolf's projection models start slowly on Penn Treebank: the first batches of the
``ptb-small-*`` recipes, measured.

The tied + projection model scores ``logits = W (P h + c) + b``. The projection bias ``c`` is a
second output bias seen through ``W``: one SGD step on it moves the logits by ``lr * W Wᵀ g``
(``g``: the loss gradient for the logits, summed over the batch), and the nonzero eigenvalues of
``W Wᵀ`` (those of ``Wᵀ W``) are in the tens at initialisation. At the paper's learning rate that
path overshoots: the gradient norm stays above the clipping threshold, clipping scales the whole
update down, and the LSTM receives almost no gradient until the model escapes.

This script trains each recipe's model for ``--batches`` steps the way the trainer does (the
recipe's task, SGD at the recipe's first-epoch learning rate, global norm clipping) and prints per
recipe: the eigenvalue range of ``WᵀW`` at initialisation, the share of steps whose gradient norm
was clipped, the mean gradient norm that reached the LSTM weights after clipping (first and
second half of the batches), and the training perplexity of the last 100 batches. Every recipe
starts from the same seed (the recipes', or each of ``--seeds``).

    TYING_DATA_ROOT=~/tying-data python examples/projection_stall.py            # 600 batches
    python examples/projection_stall.py --data-root ~/tying-data --batches 200
    python examples/projection_stall.py --recipes ptb-small-tied-pr --seeds 1111 1112 \
        --set model.uniform_output_biases=true                                   # a recipe override

Its output is the measurement table of the ablation in ``docs/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from tying.machine import describe_code, describe_machine
from tying.recipes import load_recipe
from tying.training import build_optimizer

RECIPES = ["ptb-small-tied", "ptb-small-pr", "ptb-small-tied-pr", "ptb-small-tied-pr-nobias", "ptb-small-tied-pr-lr10"]


def measure(name: str, data_root: str | None, batches: int, overrides: list[str]) -> dict[str, float]:
    recipe = load_recipe(name, overrides)
    task = recipe.make_task()
    data = task.load_data(data_root)
    torch.manual_seed(recipe.train.seed)
    model = task.build_model(data)
    weight = model.decoder.weight.detach()
    eig = torch.linalg.eigvalsh(weight.T @ weight)
    config = recipe.train
    optimizer = build_optimizer(config, model)
    for group in optimizer.param_groups:
        group["lr"] = config.first_epoch_lr or config.lr
    params = [p for group in optimizer.param_groups for p in group["params"]]
    lstm = list(model.rnns.parameters())
    clipped, lstm_norms, losses, carry = 0, [], [], None
    model.train()
    for i, batch in enumerate(task.train_batches(data, 1)):
        if i == batches:
            break
        out = task.step(model, batch, carry)
        carry = out.carry
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        norm = float(nn.utils.clip_grad_norm_(params, config.clip))
        clipped += norm > config.clip
        lstm_norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in lstm]))))
        optimizer.step()
        losses.append(float(out.loss.detach()))  # the objective (cross-entropy plus any penalty)
    half = len(lstm_norms) // 2
    return {
        "eig_min": float(eig.min()),
        "eig_max": float(eig.max()),
        "lr": config.first_epoch_lr or config.lr,
        "clipped": clipped / len(lstm_norms),
        "lstm_first": sum(lstm_norms[:half]) / half,
        "lstm_second": sum(lstm_norms[half:]) / (len(lstm_norms) - half),
        "ppl_last100": math.exp(sum(losses[-100:]) / len(losses[-100:])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", help="folder holding ptb/ (default: $TYING_DATA_ROOT)")
    ap.add_argument("--batches", type=int, default=600)
    ap.add_argument("--recipes", nargs="+", default=RECIPES)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every recipe (repeatable)")
    ap.add_argument("--seeds", nargs="+", type=int, help="train each recipe under each of these seeds (default: the recipe's seed)")
    args = ap.parse_args()
    print(f"machine: {describe_machine()}; code: {describe_code()}")
    seeds = "seed of the recipe" if args.seeds is None else f"seeds {', '.join(map(str, args.seeds))}"
    print(f"first {args.batches} training batches of each recipe, {seeds}, SGD as the trainer runs it")
    if args.set:
        print(f"recipe overrides: {' '.join(args.set)}")
    head = f"{'recipe':<32} | {'eig(WᵀW) at init':>16} | {'lr':>4} | {'clipped':>7} | {'LSTM grad, 1st half':>19} | {'2nd half':>8} | {'train ppl, last 100':>19}"
    print(head)
    print("-" * len(head))
    runs = [(name, [], name) for name in args.recipes] if args.seeds is None else [
        (name, [f"train.seed={seed}"], f"{name} (seed {seed})") for name in args.recipes for seed in args.seeds
    ]
    for name, seed_override, label in runs:
        m = measure(name, args.data_root, args.batches, [*args.set, *seed_override])
        print(
            f"{label:<32} | {m['eig_min']:>7.1f} - {m['eig_max']:<6.1f} | {m['lr']:>4g} | {m['clipped']:>7.0%} | "
            f"{m['lstm_first']:>19.4f} | {m['lstm_second']:>8.4f} | {m['ppl_last100']:>19,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
