"""``tying demo``: the built-in recipes ``demo-tied`` and ``demo-untied`` — the same LSTM language
model with and without input/output embedding tying (Press & Wolf 2017, arXiv 1608.05859;
Inan et al. 2017, arXiv 1611.01462) on the built-in corpus — trained and compared through the
same runner and report writer as ``tying compare``.

Both models start from the same seed (so their embeddings and LSTMs start equal; the untied
model's separate output matrix is drawn after them) and see the same data and dropout masks.
The recipes train 2 layers of 200 units for 4 epochs of 180 windows of 20 x 35 tokens (each
epoch continues through the training text where the previous one stopped). On a machine with two
or more cores the two runs train side by side, each in its own process with half the cores
(``--jobs``; ``--quick`` trains them in this process, one after the other, as subprocesses would
cost more than its seconds of training); the committed report ``docs/demo/tying-demo.md`` gives
the wall times measured and the machine. With ``--data`` the same cap keeps the time similar for
a 10k vocabulary (PTB); a larger vocabulary (WikiText-2: 33k) makes every step slower, so lower
``--max-batches`` there.

Run again with the same options into the same ``--out``, the demo trains nothing and reports the
finished runs again (``make demo`` twice); an earlier demo of other options, or an unfinished
one, is left alone unless ``--resume`` continues it or ``--force`` starts over.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tying._text import plural
from tying.cli._command import invoked_command
from tying.cli._outputs import check_outputs, report_outputs
from tying.cli.failures import expected_errors, fail, print_table

if TYPE_CHECKING:
    from tying.recipes import Run

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


def _earlier_runs(runs: Sequence[Run], out: Path, *, resume: bool, force: bool) -> list[str]:
    """The runs already in ``out``. Unless ``resume`` or ``force``, they must be the finished runs
    of this very demo (``make demo`` twice: reported again, not retrained); another demo's, or an
    unfinished one, is refused."""
    from tying.recipes import read_metrics
    from tying.recipes.run import changed_runs

    earlier = [r.name for r in runs if (out / r.name).is_dir()]
    if earlier and not (resume or force):
        records = [read_metrics(out / run.name) for run in runs]
        finished = all(r is not None and len(r["history"]) == run.recipe.train.epochs for r, run in zip(records, runs, strict=True))
        if not finished or changed_runs(runs, out):
            raise fail(
                f"{str(out)!r} holds an earlier demo with other options or unfinished (runs {', '.join(earlier)}); "
                "pass --resume to continue it, --force to start over, or another --out"
            )
    return earlier


def _describe(console: Console, recipe: Any, task: Any, loaded: Any, *, builtin: bool) -> None:
    """The demo's corpus, model and schedule, in two lines."""
    corpus = loaded.corpus
    console.print(
        f"corpus {str(corpus.path)!r}{' (built-in: a snapshot of Python standard-library docstrings)' if builtin else ''}: "
        f"vocabulary {len(corpus.dictionary):,}, tokens train {corpus.train.numel():,} / "
        f"valid {corpus.valid.numel():,} / test {corpus.test.numel():,}",
        highlight=False,
    )
    m, t = recipe.tables["model"], recipe.train
    windows = len(task.train_batches(loaded, 1))
    per_epoch = min(windows, t.max_batches or windows)
    console.print(
        f"model: {m.num_layers}-layer LSTM, {m.hidden_size} units, dropout {m.dropout}; SGD lr {t.lr:g}, clip {t.clip:g}, "
        f"lr / {t.lr_decay:g} when validation does not improve; {plural(t.epochs, 'epoch')} of {per_epoch:,} of the {plural(windows, 'window')} "
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
    out: Annotated[
        Path | None, typer.Option(help="Folder for the two runs and the report. (default runs/demo; --quick: runs/demo-quick)", show_default=False)
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs. (default 4; --quick: 2)")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and dropout (the same for both models). (default 1111)")] = None,
    size: Annotated[int | None, typer.Option(min=1, help="Embedding and LSTM width (equal, as tying needs). (default 200; --quick: 32)")] = None,
    layers: Annotated[int | None, typer.Option(min=1, help="LSTM layers. (default 2; --quick: 1)")] = None,
    dropout: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="Dropout probability. (default 0.2)")] = None,
    max_batches: Annotated[
        int | None, typer.Option(min=0, help="Training windows per epoch; 0: the whole training set. (default 180; --quick: 10)")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny model and short epochs: a smoke test in seconds.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the runs in --out (e.g. with more --epochs).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete an earlier demo in --out and start over.")] = False,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Runs trained at once, each in its own process (logs in --out). (default 2 on 2 or more cores; --quick: 1)")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a setting of both recipes (repeatable), after the options above.")
    ] = None,
) -> None:
    """Train the same small LSTM language model tied and untied and compare them side by side."""
    from tying.recipes import expand_seeds, load_recipe, run_recipes
    from tying.recipes.report import THROUGHPUT_NOTE, rich_table, write_report

    console = Console()
    out = out or Path("runs/demo-quick" if quick else "runs/demo")  # a smoke test never meets the real demo's runs
    if quick:
        size, layers = size or _QUICK["size"], layers or _QUICK["layers"]
        epochs = epochs or _QUICK["epochs"]
        max_batches = _QUICK["max_batches"] if max_batches is None else max_batches
    sets = _overrides(data, epochs, seed, size, layers, dropout, max_batches) + (overrides or [])
    with expected_errors(f"continue with: {invoked_command(ctx)}" + ("" if resume else " --resume")):
        recipes = [load_recipe(name, sets) for name in DEMO_RECIPES]
        runs = expand_seeds(recipes)
        earlier = _earlier_runs(runs, out, resume=resume, force=force)
        check_outputs([("--out", out), *(("run folder", out / r.name) for r in runs)], report_outputs(out, REPORT))
        task = recipes[0].make_task()
        loaded = task.load_data(None)
        if force:
            for name in earlier:
                shutil.rmtree(out / name)
        _describe(console, recipes[0], task, loaded, builtin=data is None)
        run_recipes(runs, out, jobs=jobs or (1 if quick else min(2, os.cpu_count() or 1)), data_root=None, console=console)
        rows, written = write_report(runs, out, f"tying demo: tied vs untied LSTM LM on {loaded.corpus.path.name}", REPORT)
    for table in rich_table(rows, title="tied vs untied"):
        print_table(console, table)
    console.print(THROUGHPUT_NOTE, highlight=False)
    console.print(f"wrote {', '.join(map(str, written))}", highlight=False)
