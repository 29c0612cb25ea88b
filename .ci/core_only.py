"""The library core on a core-only install (torch, safetensors and numpy; no extras): tie, save,
load into a fresh model, verify. Run by .ci/run in a venv where `pip install .` installed nothing else;
it fails if an extra's package is importable there, so the check cannot pass by accident."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import warnings
from pathlib import Path

EXTRAS = ("typer", "rich", "pydantic", "matplotlib", "transformers", "peft", "torchao", "onnx", "onnxruntime")

present = [name for name in EXTRAS if importlib.util.find_spec(name) is not None]
assert not present, f"not a core-only install: {', '.join(present)} importable from {sys.prefix}"

with warnings.catch_warnings():
    warnings.simplefilter("error")  # torch warns "Failed to initialize NumPy" when numpy is missing
    import torch
    from torch import nn

import tying


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 50)


torch.manual_seed(0)
model = TinyLM()
tying.tie(model, "embed.weight", "head.weight")
with tempfile.TemporaryDirectory() as folder:
    path = tying.save(model, Path(folder) / "tiny.safetensors")
    fresh = TinyLM()
    assert fresh.head.weight is not fresh.embed.weight
    tying.load(fresh, path)
tying.verify(fresh)
assert fresh.head.weight is fresh.embed.weight
want, got = model.state_dict(), fresh.state_dict()
assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
print(f"core-only install OK: tying {tying.__version__}, torch {torch.__version__}; tie, save, load, verify")
