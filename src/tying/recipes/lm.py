"""The language-model training recipe: corpus + :class:`~tying.models.LSTMLanguageModel` + loss
+ :class:`~tying.training.Trainer`, run from a :class:`~tying.recipes.Recipe`.

A run writes into its folder:

* the trainer's checkpoints (``model-epochNNN.safetensors``, ``best.safetensors``,
  ``train_state.safetensors``), so an interrupted run continues with ``resume``;
* ``metrics.json`` when it finishes: the resolved recipe, parameter counts, per-epoch history,
  best validation and test perplexity, the command that reproduces it and the machine.

``metrics.json`` is the record reports are built from (:mod:`tying.recipes.compare`); it is
written last and atomically, so its presence means the run is complete.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import tying
from tying._io import atomic_write_text
from tying.data import Corpus, load_corpus
from tying.machine import describe_machine
from tying.models import LSTMLanguageModel
from tying.recipes.config import Recipe, RecipeError
from tying.training import Trainer, build_loss

__all__ = ["METRICS_FILE", "DEFAULT_DATA_ROOT", "resolve_corpus", "train_lm", "read_metrics"]

METRICS_FILE = "metrics.json"

#: Where corpus names (``"ptb"``, ``"wikitext-2"``) are looked up unless ``--data-root`` or the
#: ``TYING_DATA_ROOT`` environment variable says otherwise: the benchmark folder beside a checkout.
DEFAULT_DATA_ROOT = Path("../shared/data")


def resolve_corpus(name: str, data_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder of corpus ``name``: None for ``"builtin"``, ``name`` itself if it is a folder,
    else ``data_root / name`` (``data_root`` defaults to ``$TYING_DATA_ROOT`` or
    :data:`DEFAULT_DATA_ROOT`)."""
    if name == "builtin":
        return None
    if Path(name).is_dir():
        return Path(name)
    root = Path(data_root or os.environ.get("TYING_DATA_ROOT") or DEFAULT_DATA_ROOT)
    folder = root / name
    if not folder.is_dir():
        raise RecipeError(
            f"corpus {name!r} not found at {str(folder)!r}; pass --data-root (the folder holding {name}/) "
            "or --data (the corpus folder itself), or set TYING_DATA_ROOT"
        )
    return folder


def train_lm(
    recipe: Recipe,
    out: str | os.PathLike[str],
    *,
    corpus: Corpus | None = None,
    data_root: str | os.PathLike[str] | None = None,
    resume: bool = True,
    command: str = "",
    console: Console | None = None,
) -> dict[str, Any]:
    """Train ``recipe`` into folder ``out`` and return (and write) its metrics record.

    Args:
        corpus: an already loaded corpus (else the recipe's corpus is loaded via :func:`resolve_corpus`).
        resume: continue from a checkpoint in ``out`` if there is one.
        command: the command line that reproduces the run, stored in the record.
        console: progress and epoch lines go here (None: silent).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        corpus = load_corpus(resolve_corpus(recipe.corpus, data_root))
    torch.manual_seed(recipe.train.seed)  # the same initial weights for every variant of a recipe family
    model = LSTMLanguageModel(recipe.model_config(len(corpus.dictionary)))
    counts = tying.summary(model)
    if console is not None:
        console.rule(f"{recipe.name}: {counts.unique_parameters:,} unique parameters")
    trainer = Trainer(
        model, corpus.train, corpus.valid, corpus.test, recipe.train, out, loss_fn=build_loss(recipe.loss), console=console
    )
    started = time.time()
    result = trainer.fit(resume=resume)
    record = {
        "name": recipe.name,
        "recipe": recipe.to_dict(),
        "corpus": {
            "path": str(corpus.path),
            "vocab_size": len(corpus.dictionary),
            **{split: getattr(corpus, split).numel() for split in ("train", "valid", "test")},
        },
        "total_parameters": counts.total_parameters,
        "unique_parameters": counts.unique_parameters,
        **result.to_dict(),
        "command": command,
        "machine": describe_machine(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()),
        "session_s": time.time() - started,
    }
    atomic_write_text(out / METRICS_FILE, json.dumps(record, indent=2) + "\n")
    return record


def read_metrics(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metrics record of a finished run in ``folder``, or None if it has not finished."""
    path = Path(folder) / METRICS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
