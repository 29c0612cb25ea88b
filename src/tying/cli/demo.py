"""``tying demo``: the built-in recipes ``demo-tied`` and ``demo-untied`` — the same LSTM language
model with and without input/output embedding tying (Press & Wolf 2017, arXiv 1608.05859;
Inan et al. 2017, arXiv 1611.01462) on the built-in corpus — trained and compared through the
same runner and report writer as ``tying compare``.

Both models start from the same seed (so their embeddings and LSTMs start equal; the untied
model's separate output matrix is drawn after them) and see the same data and dropout masks.
The recipes train 2 layers of 200 units for 4 epochs of 250 windows of 20 x 35 tokens (each
epoch continues through the training text where the previous one stopped); the committed report
``docs/demo/tying-demo.md`` gives the wall time measured and the machine. With ``--data`` the
same cap keeps the time similar for a 10k vocabulary (PTB); a larger vocabulary (WikiText-2:
33k) makes every step slower, so lower ``--max-batches`` there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tying.cli._command import invoked_command
from tying.cli.failures import expected_errors, fail, print_table

__all__ = ["demo", "DEMO_RECIPES", "REPORT"]

DEMO_RECIPES = ("demo-tied", "demo-untied")
REPORT = "tying-demo"
# --quick: a tiny model and short epochs, a smoke test in seconds.
_QUICK = {"size": 32, "layers": 1, "epochs": 2, "max_batches": 10}


def _overrides(data: Path | None, epochs: int | None, seed: int | None, size: int | None, layers: int | None, dropout: float | None, max_batches: int | None) -> list[str]:
    """The demo's options as recipe overrides (recorded in each run's command)."""
    sets = [f"data.corpus={json.dumps(str(data))}"] if data is not None else []
    if size is not None:
        sets += [f"model.embedding_size={size}", f"model.hidden_size={size}"]
    for key, value in (("model.num_layers", layers), ("model.dropout", dropout), ("train.epochs", epochs), ("train.seed", seed), ("train.max_batches", max_batches)):
        if value is not None:
            sets.append(f"{key}={value}")
    return sets


def _describe(console: Console, recipe: Any, task: Any, loaded: Any, *, builtin: bool) -> None:
    """The demo's corpus, model and schedule, in two lines."""
    corpus = loaded.corpus
    console.print(
        f"corpus {str(corpus.path)!r}{' (built-in: Python standard-library docstrings)' if builtin else ''}: "
        f"vocabulary {len(corpus.dictionary):,}, tokens train {corpus.train.numel():,} / "
        f"valid {corpus.valid.numel():,} / test {corpus.test.numel():,}",
        highlight=False,
    )
    m, t = recipe.tables["model"], recipe.train
    windows = len(task.train_batches(loaded, 1))
    per_epoch = min(windows, t.max_batches or windows)
    console.print(
        f"model: {m.num_layers}-layer LSTM, {m.hidden_size} units, dropout {m.dropout}; SGD lr {t.lr:g}, clip {t.clip:g}, "
        f"lr / {t.lr_decay:g} when validation does not improve; {t.epochs} epochs of {per_epoch:,} of the {windows:,} windows "
        f"of {t.batch_size} x {t.bptt} training tokens"
        + (f" ({per_epoch / windows:.0%}; each epoch continues where the last stopped)" if per_epoch < windows else ""),
        highlight=False,
    )


def demo(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="Corpus folder with train.txt, valid.txt, test.txt (e.g. PTB). Default: the built-in corpus."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the two runs and the report.")] = Path("runs/demo"),
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs. (default 4; --quick: 2)")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and dropout (the same for both models). (default 1111)")] = None,
    size: Annotated[int | None, typer.Option(min=1, help="Embedding and LSTM width (equal, as tying needs). (default 200; --quick: 32)")] = None,
    layers: Annotated[int | None, typer.Option(min=1, help="LSTM layers. (default 2; --quick: 1)")] = None,
    dropout: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="Dropout probability. (default 0.2)")] = None,
    max_batches: Annotated[
        int | None, typer.Option(min=0, help="Training windows per epoch; 0: the whole training set. (default 250; --quick: 10)")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny model and short epochs: a smoke test in seconds.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the runs in --out (e.g. with more --epochs).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete an earlier demo in --out and start over.")] = False,
) -> None:
    """Train the same small LSTM language model tied and untied and compare them side by side."""
    from tying.recipes import expand_seeds, load_recipe, run_recipes
    from tying.recipes.report import THROUGHPUT_NOTE, rich_table, write_report

    console = Console()
    if quick:
        size, layers = size or _QUICK["size"], layers or _QUICK["layers"]
        epochs = epochs or _QUICK["epochs"]
        max_batches = _QUICK["max_batches"] if max_batches is None else max_batches
    sets = _overrides(data, epochs, seed, size, layers, dropout, max_batches)
    with expected_errors(f"continue with: {invoked_command(ctx)}" + ("" if resume else " --resume")):
        recipes = [load_recipe(name, sets) for name in DEMO_RECIPES]
        runs = expand_seeds(recipes)
        earlier = [r.name for r in runs if (out / r.name).is_dir()]
        if earlier and not (resume or force):
            raise fail(f"{str(out)!r} holds an earlier demo (runs {', '.join(earlier)}); pass --resume to continue it, --force to start over, or another --out")
        task = recipes[0].make_task()
        loaded = task.load_data(None)
        if force:
            for name in earlier:
                shutil.rmtree(out / name)
        _describe(console, recipes[0], task, loaded, builtin=data is None)
        run_recipes(runs, out, data_root=None, console=console)
        rows, written = write_report(runs, out, f"tying demo: tied vs untied LSTM LM on {loaded.corpus.path.name}", REPORT)
    for table in rich_table(rows, title="tied vs untied"):
        print_table(console, table)
    console.print(THROUGHPUT_NOTE, highlight=False)
    console.print(f"wrote {', '.join(map(str, written))}", highlight=False)
