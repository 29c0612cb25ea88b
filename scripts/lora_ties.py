"""LoRA on a tie group, merged: the largest logit gap between the adapter model and the merged
model (docs/adapters.md, "LoRA"), for peft 0.21's own merge and for tying.peft's.

Models are built from tiny local configs (nothing is downloaded) with fixed seeds: a GPT-2
(``GPT2LMHeadModel``: 2 layers, width 32, 4 heads, vocabulary 100; ``wte`` tied to ``lm_head``)
and the project's LSTM LM (vocabulary 100, width 32, tied). Each adapter is trained 5 SGD steps
(lr 0.5 for GPT-2; 20 for the LSTM LM, its recipes' rate) on one fixed random batch of 4 x 16 token ids, so its update is far from zero; the gap is
then measured on that batch. Runs in seconds on a CPU:

    PYTHONPATH=src python scripts/lora_ties.py --out results/lora
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peft
import torch
import torch.nn.functional as F
import transformers

import tying
import tying.peft as tp
from tying.hf import declare_ties
from tying.models.lstm import LSTMConfig, LSTMLanguageModel

warnings.filterwarnings("ignore")
transformers.utils.logging.set_verbosity_error()
V = 100
IDS = torch.randint(0, V, (4, 16), generator=torch.Generator().manual_seed(1))


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=V, n_positions=32))
    declare_ties(model)
    return model.eval()


def lstm() -> torch.nn.Module:
    torch.manual_seed(0)
    return LSTMLanguageModel(LSTMConfig(vocab_size=V, embedding_size=32, hidden_size=32, num_layers=1, tie=True, dropout=0.0)).eval()


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        if hasattr(model, "init_state") or hasattr(getattr(model, "base_model", None), "init_state"):
            return model(IDS.t(), model.init_state(IDS.size(0)))[0]
        return model(input_ids=IDS).logits


def loss(model: Any) -> torch.Tensor:
    if hasattr(model, "init_state") or hasattr(getattr(model, "base_model", None), "init_state"):
        out = model(IDS.t()[:-1], model.init_state(IDS.size(0)))[0]
        return F.cross_entropy(out.flatten(0, 1), IDS.t()[1:].flatten())
    return model(input_ids=IDS, labels=IDS).loss


def train(model: Any, params: list[torch.nn.Parameter]) -> None:
    # The LSTM LM starts with small weights (uniform +-0.1) and trains at SGD lr 20 in its recipes.
    recurrent = hasattr(model, "init_state") or hasattr(getattr(model, "base_model", None), "init_state")
    opt = torch.optim.SGD(params, lr=20.0 if recurrent else 0.5)
    for _ in range(5):
        opt.zero_grad()
        loss(model).backward()
        opt.step()


def with_peft(build: Callable[[], torch.nn.Module], targets: list[str], **lora: Any) -> Any:
    model = peft.get_peft_model(build(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=True, **lora))
    train(model, [p for p in model.parameters() if p.requires_grad])
    return model


def tie_matrices_stored(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        info = tying.read_checkpoint(tying.save(model, Path(folder) / "m.safetensors"))
    return sum(t.shape == shape for t in info.tensors)


def peft_rows(name: str, build: Callable[[], torch.nn.Module], targets: list[str], label: str, **lora: Any) -> list[dict[str, Any]]:
    model = with_peft(build, targets, **lora)
    want, report = logits(model), tying.verify(model, raise_error=False)
    twin = with_peft(build, targets, **lora)
    try:
        merged = tp.merge_and_unload(twin)
        ours = f"{(logits(merged) - want).abs().max().item():.2g}"
    except tying.TieError:
        ours = "refused (different updates on one tie)"
    gap = (logits(model.merge_and_unload()) - want).abs().max().item()
    verdict = "ok" if report.ok else "broken tie reported"
    return [{"model": name, "adapter": label, "max abs logit": f"{want.abs().max().item():.3g}", "tying.verify before merge": verdict, "peft merge_and_unload gap": f"{gap:.3g}", "tying.peft.merge_and_unload gap": ours}]


def tying_row(name: str, build: Callable[[], torch.nn.Module], path: str) -> dict[str, Any]:
    model = build()
    tp.add_lora(model, path, rank=4, alpha=8)
    train(model, tp.lora_parameters(model))
    want = logits(model)
    tp.merge(model)
    gap = (logits(model) - want).abs().max().item()
    shape = tuple(model.get_parameter(path).shape)
    return {
        "model": name, "adapter": f"tying.peft.add_lora on the tie group ({path})", "max abs logit": f"{want.abs().max().item():.3g}",
        "tying.verify before merge": "ok",
        "peft merge_and_unload gap": "-", "tying.peft.merge_and_unload gap": f"{gap:.2g} (tying.peft.merge; tied matrix stored {tie_matrices_stored(model, shape)}x)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/lora"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name, build, sites, head in (("GPT-2", gpt2, ["wte", "lm_head"], "lm_head"), ("LSTM LM", lstm, ["encoder", "decoder"], "decoder")):
        rows += peft_rows(name, build, sites, f"peft LoRA on {' + '.join(sites)}")
        rows += peft_rows(name, build, sites, f"peft LoRA on {' + '.join(sites)}, ensure_weight_tying", ensure_weight_tying=True)
        rows += peft_rows(name, build, [head], f"peft LoRA on {head} only")
        rows.append(tying_row(name, build, f"{head}.weight"))
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lora_ties.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "lora_ties.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
