"""Bytes on disk and validation perplexity of tied language models, fp32 vs int8 weight-only
(torchao) with the tie kept as one int8 matrix vs int8 untied (docs/adapters.md, "Quantization").

Two models, trained here on the built-in corpus (no download):

* the tied LSTM LM of the demo recipe (``demo-tied``: 2x200 LSTM, 4 epochs of 180 windows);
* a GPT-2 (transformers ``GPT2LMHeadModel``) from a *small* local config — 2 layers, width 128,
  4 heads, context 64, the corpus vocabulary; GPT-2-small's own config (12x768) does not train to a
  meaningful perplexity in a CPU minute, so it is not used — trained with AdamW for ``--gpt2-steps``
  steps of 20 x 64 tokens.

Each is then quantized three ways from the same trained weights, saved with ``tying.save`` (the
file size is the "bytes" column) and evaluated on the validation split.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/quantized_ties.py --out results/quant
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import tying
import tying.quant as tq
from tying.recipes.config import load_recipe
from tying.training import Trainer

warnings.filterwarnings("ignore")


def variants(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    shared, untied = copy.deepcopy(model), copy.deepcopy(model)
    tq.quantize_(shared)
    tq.quantize_(untied, ties="untie")
    return {"fp32 tied": model, "int8, tie kept (one int8 matrix)": shared, "int8, untied (two int8 matrices)": untied}


def measure(name: str, models: dict[str, torch.nn.Module], evaluate: Any) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, model in models.items():
            path = tying.save(model, Path(folder) / "m.safetensors")
            rows.append({"model": name, "variant": label, "bytes": os.path.getsize(path), "valid_ppl": evaluate(model)})
            print(rows[-1], flush=True)
    return rows


def lstm_rows() -> list[dict[str, Any]]:
    recipe = load_recipe("demo-tied")
    task = recipe.make_task()
    data = task.load_data(None)
    torch.manual_seed(recipe.train.seed)
    model = task.build_model(data)
    with tempfile.TemporaryDirectory() as run:  # the engine's checkpoints; only the figures are kept
        Trainer(task, model, data, run).fit()
    model.eval()
    return measure("LSTM LM 2x200 (demo-tied)", variants(model), lambda m: task.evaluate(m, data, "valid", epoch=0)["ppl"])


def gpt2_rows(steps: int) -> list[dict[str, Any]]:
    import transformers

    from tying.hf import declare_ties

    task = load_recipe("demo-tied").make_task()
    data = task.load_data(None)
    vocab = len(data.corpus.dictionary)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, n_positions=64, vocab_size=vocab)
    model = transformers.GPT2LMHeadModel(cfg)
    declare_ties(model)
    train, valid, ctx = data.corpus.train, data.corpus.valid, 64
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, train.numel() - ctx - 1, (20,), generator=gen)
        x = torch.stack([train[s : s + ctx + 1] for s in starts.tolist()])
        loss = model(x[:, :-1], labels=x[:, :-1]).loss  # shifted inside
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    def evaluate(m: torch.nn.Module) -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, valid.numel() - ctx - 1, ctx):
                x = valid[s : s + ctx + 1].unsqueeze(0)
                logits = m(x[:, :-1]).logits
                total += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
                count += ctx
        return math.exp(total / count)

    return measure(f"GPT-2 2x128 ({steps} AdamW steps)", variants(model), evaluate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/quant"))
    parser.add_argument("--gpt2-steps", type=int, default=600)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = lstm_rows() + gpt2_rows(args.gpt2_steps)
    lines = ["| model | variant | bytes on disk | valid perplexity |", "|---|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['bytes']:,} | {r['valid_ppl']:.2f} |" for r in rows]
    (args.out / "quantized_ties.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "quantized_ties.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), f"\n{time.time() - started:.0f} s", sep="\n")


if __name__ == "__main__":
    main()
