"""Record (or recompute) the golden numbers of ``tests/test_golden_training.py``: what training
gives, to the last bit, on small data every machine can build, and how every built-in recipe
resolves. Run from the repository root to rewrite the JSON files next to this script::

    OMP_NUM_THREADS=1 python tests/golden/make_golden.py

Only when a change is *meant* to change results: the files pin the numbers that moving code around
(issue 23's task layout) must keep.

* ``training.json``: the losses of the first :data:`STEPS` training steps of three recipes
  (an LSTM LM, a tied Transformer translation model, a tied autoencoder) with sizes reduced by
  overrides, and the loss/metric values of every epoch; plus the numbers of ``tying demo --quick``.
  The LM data is the English side of :func:`tying.tasks.translation.builtin_bitext` written as a corpus
  folder (generated, the same everywhere; not the stdlib corpus, which depends on the interpreter).
* ``recipes.json``: ``Recipe.to_dict()`` of every built-in recipe (its ``source`` path left out).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
TRAINING, RECIPES = HERE / "training.json", HERE / "recipes.json"
STEPS = 50
#: Record keys that measure the machine (time, memory), not the model.
TIMES = {"train_s", "wall_s", "tokens_per_s", "examples_per_s", "peak_rss_mib"}

#: recipe -> overrides (``{corpus}``: the generated LM corpus folder).
RUNS: dict[str, list[str]] = {
    "ptb-small-tied": [
        "data.corpus={corpus}", "model.embedding_size=64", "model.hidden_size=64", "train.epochs=2", "train.max_batches=25",
    ],
    "multi30k-three-way": [
        'data.corpus="builtin"', "data.vocab_size=100", "model.embedding_size=32", "model.encoder_layers=1",
        "model.decoder_layers=1", "model.ffn_size=64", "model.max_positions=64", "train.max_tokens=400",
        "train.epochs=1", "train.max_batches=50", "train.warmup_steps=20", "eval.beam_size=2",
    ],
    "digits-ae-tied": ["train.epochs=3"],
}  # fmt: skip


def write_corpus(folder: Path) -> Path:
    """The English sentences of the built-in bitext as a word corpus folder (train/valid/test.txt)."""
    from tying.tasks.translation import builtin_bitext

    bitext = builtin_bitext()
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("".join(line + "\n" for line in bitext.source(split)), encoding="utf-8")
    return folder


def _warm() -> None:
    """Run the fused head's one-time oneDNN probe now: it draws from the global torch RNG, so
    whichever training step first triggers it would shift every later dropout mask, and the
    numbers would depend on what ran earlier in the process."""
    from tying.functional import onednn_available

    onednn_available()


def _numbers(record: dict[str, Any]) -> dict[str, Any]:
    """The model's numbers in a run record: per-epoch history, valid/test metrics, parameter counts."""
    keys = ("valid", "test", "test_last", "best_epoch", "total_parameters", "unique_parameters")
    return {
        "history": [{k: v for k, v in epoch.items() if k not in TIMES} for epoch in record["history"]],
        **{k: record[k] for k in keys},
    }


def train_steps(recipe_name: str, overrides: list[str], corpus: Path, out: Path) -> dict[str, Any]:
    """Train ``recipe_name`` with ``overrides`` at one thread into ``out``; the first
    :data:`STEPS` step losses (``repr`` of the Python float) and the record's numbers."""
    from tying.recipes import load_recipe, train_recipe

    recipe = load_recipe(recipe_name, [o.format(corpus=json.dumps(str(corpus))) for o in overrides])
    cls = type(recipe.make_task())
    original = cls.step
    losses: list[str] = []

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        losses.append(repr(out.loss.item()))
        return out

    _warm()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cls.step = recording  # type: ignore[method-assign]
    try:
        record = train_recipe(recipe, out, resume=False)
    finally:
        cls.step = original  # type: ignore[method-assign]
        torch.set_num_threads(threads)
    assert len(losses) >= STEPS, f"{recipe_name}: {len(losses)} steps, fewer than {STEPS}"
    return {"overrides": overrides, "losses": losses[:STEPS], **_numbers(record)}


def demo_numbers(corpus: Path, out: Path) -> dict[str, Any]:
    """``tying demo --quick --data CORPUS``: the numbers of both runs' records."""
    from typer.testing import CliRunner

    from tying.cli.main import app
    from tying.recipes import read_metrics

    _warm()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["demo", "--quick", "--data", str(corpus), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return {name: _numbers(read_metrics(out / name) or {}) for name in ("demo-tied", "demo-untied")}


def training_numbers(work: Path) -> dict[str, Any]:
    """Everything ``training.json`` holds, computed now (``work``: a scratch folder)."""
    corpus = write_corpus(work / "corpus")
    runs = {name: train_steps(name, overrides, corpus, work / name) for name, overrides in RUNS.items()}
    return {"runs": runs, "demo_quick": demo_numbers(corpus, work / "demo")}


def resolved_recipes() -> dict[str, dict[str, Any]]:
    """``Recipe.to_dict()`` of every built-in recipe, without its ``source`` (an install path)."""
    from tying.recipes import builtin_recipes, load_recipe

    out = {}
    for name in builtin_recipes():
        record = load_recipe(name).to_dict()
        record.pop("source")
        out[name] = record
    return out


def main() -> None:
    import os

    os.environ.setdefault("TYING_CACHE_DIR", tempfile.mkdtemp(prefix="tying-golden-cache-"))
    with tempfile.TemporaryDirectory() as work:
        # The kernels torch picks (and so the last bits) depend on the CPU's vector instructions.
        numbers = {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(), "python": sys.version.split()[0], **training_numbers(Path(work))}
    TRAINING.write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
    RECIPES.write_text(json.dumps(resolved_recipes(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {TRAINING} and {RECIPES}")


if __name__ == "__main__":
    main()
