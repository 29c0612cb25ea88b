"""Run several language-model recipes and report them side by side.

Every run lives in ``out/<recipe name>/`` (checkpoints, ``train.log`` when run in a subprocess,
``metrics.json`` when finished). Running the comparison again skips finished runs and resumes
unfinished ones from their checkpoints, so a long comparison can be spread over several
invocations. Several reports may share one folder (and so reuse its runs), each under its own
name; a report is rebuilt from the ``metrics.json`` files alone, so it is the same every time for
the same stored metrics:

* ``<report>.md``: the table (parameters, unique parameters, epochs, best validation and test
  perplexity, the paper's numbers and the gap, tokens/s, wall time), the plots and, per run, the
  exact command and the machine it ran on;
* ``<report>.csv``: one row per run and epoch;
* ``<report>-valid-ppl.png`` (validation perplexity per epoch) and ``<report>-test-vs-params.png``.

:func:`update_results_doc` pastes the same section between markers into a document such as
``docs/RESULTS.md``.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator
from rich.console import Console
from rich.table import Table

from tying._io import atomic_write_text
from tying.data import Corpus, load_corpus
from tying.recipes.config import Recipe, builtin_recipes
from tying.recipes.lm import read_metrics, resolve_corpus, train_lm
from tying.training.report import new_figure

__all__ = ["train_command", "run_recipes", "report_rows", "write_report", "update_results_doc"]

_COLUMNS = (
    "run",
    "parameters",
    "unique parameters",
    "epochs",
    "best valid ppl",
    "test ppl",
    "paper test ppl",
    "gap",
    "tokens/s",
    "wall time",
)


def train_command(recipe: Recipe, out: Path, data_root: str | os.PathLike[str] | None = None) -> list[str]:
    """The ``tying lm train`` words that run ``recipe`` into ``out`` (how a run is launched in a
    subprocess, and the command its record shows)."""
    words = ["tying", "lm", "train", "--config", _recipe_ref(recipe), "--out", str(out)]
    if data_root is not None:
        words += ["--data-root", str(data_root)]
    return words + list(recipe.overrides)


def _recipe_ref(recipe: Recipe) -> str:
    """A built-in recipe by name, any other by its path."""
    source = Path(recipe.source)
    builtin = builtin_recipes().get(source.stem)
    return source.stem if builtin is not None and builtin.resolve() == source.resolve() else recipe.source


def run_recipes(
    recipes: Sequence[Recipe],
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    data_root: str | os.PathLike[str] | None = None,
    console: Console | None = None,
) -> None:
    """Train every recipe that has no ``metrics.json`` in ``out/<name>`` yet (resuming from its
    checkpoints). ``jobs > 1`` trains that many at once in subprocesses, each with
    ``cpu_count // jobs`` torch threads and its output in ``out/<name>/train.log``."""
    out = Path(out)
    pending = [r for r in recipes if read_metrics(out / r.name) is None]
    if console is not None:
        done = len(recipes) - len(pending)
        console.print(f"{done} of {len(recipes)} run(s) already finished in {str(out)!r}; {len(pending)} to train", highlight=False)
    if jobs <= 1:
        corpora: dict[str, Corpus] = {}
        for recipe in pending:
            folder = resolve_corpus(recipe.corpus, data_root)
            key = str(folder)
            if key not in corpora:
                corpora[key] = load_corpus(folder)
            command = shlex.join(train_command(recipe, out / recipe.name, data_root))
            train_lm(recipe, out / recipe.name, corpus=corpora[key], command=command, console=console)
        return
    _run_parallel(pending, out, jobs, data_root, console)


def _run_parallel(
    recipes: Sequence[Recipe], out: Path, jobs: int, data_root: str | os.PathLike[str] | None, console: Console | None
) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue, running, failed = list(recipes), [], []
    while queue or running:
        while queue and len(running) < jobs:
            recipe = queue.pop(0)
            folder = out / recipe.name
            folder.mkdir(parents=True, exist_ok=True)
            words = train_command(recipe, folder, data_root)
            argv = [sys.executable, "-m", "tying.cli.main", *words[1:], "--threads", str(threads)]
            log = open(folder / "train.log", "ab")  # noqa: SIM115 (closed when the process ends)
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"})
            running.append((recipe, proc, log))
            if console is not None:
                console.print(f"started {recipe.name} (pid {proc.pid}, {threads} thread(s)): log {str(folder / 'train.log')!r}", highlight=False)
        finished = [item for item in running if item[1].poll() is not None]
        if not finished:
            time.sleep(2)
        for recipe, proc, log in finished:
            running.remove((recipe, proc, log))
            log.close()
            if proc.returncode != 0:
                failed.append(recipe.name)
            if console is not None:
                status = "finished" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                console.print(f"{recipe.name} {status}", highlight=False)
    if failed:
        raise RuntimeError(f"run(s) {failed} failed; see train.log in their folders under {str(out)!r}")


# --------------------------------------------------------------------------- report


def _gap(record: dict[str, Any]) -> str:
    paper = record["recipe"]["paper"].get("test_ppl")
    return "-" if paper is None or record["test_ppl"] is None else f"{record['test_ppl'] - paper:+.1f}"


def report_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row of formatted cells (:data:`_COLUMNS`) per finished run."""
    rows = []
    for r in records:
        paper = r["recipe"]["paper"]
        rows.append(
            [
                r["name"],
                f"{r['total_parameters']:,}",
                f"{r['unique_parameters']:,}" + (f" (paper {paper['parameters']})" if "parameters" in paper else ""),
                str(len(r["history"])),
                f"{r['best_valid_ppl']:.2f}",
                f"{r['test_ppl']:.2f}",
                f"{paper['test_ppl']:g}" if "test_ppl" in paper else "-",
                _gap(r),
                f"{r['tokens_per_s']:,.0f}",
                f"{r['wall_s'] / 60:.1f} min",
            ]
        )
    return rows


def rich_table(records: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title)
    for i, column in enumerate(_COLUMNS):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in report_rows(records):
        table.add_row(*row)
    return table


def _markdown(records: Sequence[dict[str, Any]], title: str, image_prefix: str) -> str:
    """``image_prefix``: the path from the markdown file to the plots, ending in ``<report>-``."""
    lines = [f"### {title}", "", "| " + " | ".join(_COLUMNS) + " |", "|---|" + "---:|" * (len(_COLUMNS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in report_rows(records)]
    lines += ["", "Test perplexity is that of the epoch with the best validation perplexity; gap = ours - paper.", ""]
    lines += [
        f"![validation perplexity per epoch]({image_prefix}valid-ppl.png)",
        f"![test perplexity against unique parameters]({image_prefix}test-vs-params.png)",
        "",
        "Runs (each reproduced by its command; `tying compare` resumes and skips finished runs):",
        "",
    ]
    for r in records:
        sources = {r["recipe"]["paper"].get("source")} - {None}
        lines.append(
            f"- **{r['name']}**: {r['recipe']['description']}. `{r['command']}` — {len(r['history'])} epochs, "
            f"{r['wall_s'] / 60:.1f} min training+validation, finished {r['finished']} on {r['machine']}"
            + (f". Paper: {', '.join(sorted(sources))}." if sources else ".")
        )
    return "\n".join(lines) + "\n"


def _csv(records: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    fields = ["run", "epoch", "lr", "train_ppl", "valid_ppl", "tokens_per_s", "train_s", "wall_s"]
    writer = csv.DictWriter(buffer, fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        for m in r["history"]:
            writer.writerow({"run": r["name"], **{k: m[k] for k in fields[1:]}})
    return buffer.getvalue()


def _plots(records: Sequence[dict[str, Any]], prefix: Path, title: str) -> None:
    fig = new_figure()
    ax = fig.add_subplot()
    for r in records:
        ax.plot([m["epoch"] for m in r["history"]], [m["valid_ppl"] for m in r["history"]], marker="o", label=r["name"])
    ax.set(xlabel="epoch", ylabel="validation perplexity", title=title, yscale="log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.savefig(f"{prefix}-valid-ppl.png", dpi=120, metadata={"Software": None})

    fig = new_figure()
    ax = fig.add_subplot()
    for r in records:
        ax.scatter(r["unique_parameters"] / 1e6, r["test_ppl"])
        ax.annotate(r["name"], (r["unique_parameters"] / 1e6, r["test_ppl"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel="unique parameters (millions)", ylabel="test perplexity", title=title)
    ax.grid(alpha=0.3)
    fig.savefig(f"{prefix}-test-vs-params.png", dpi=120, metadata={"Software": None})


def write_report(
    recipes: Sequence[Recipe], out: str | os.PathLike[str], title: str, report: str = "summary"
) -> list[dict[str, Any]]:
    """Write ``<report>.md``, ``<report>.csv`` and the plots for the finished runs among
    ``recipes`` (in their order) into ``out``; returns their records."""
    out = Path(out)
    records = [rec for r in recipes if (rec := read_metrics(out / r.name)) is not None]
    if not records:
        raise FileNotFoundError(f"no finished run in {str(out)!r} (no <run>/metrics.json); train them first")
    _plots(records, out / report, title)
    atomic_write_text(out / f"{report}.csv", _csv(records))
    atomic_write_text(out / f"{report}.md", _markdown(records, title, f"{report}-"))
    return records


def update_results_doc(
    doc: str | os.PathLike[str],
    key: str,
    records: Sequence[dict[str, Any]],
    out: str | os.PathLike[str],
    title: str,
    report: str = "summary",
) -> Path:
    """Replace (or append) the section ``key`` of markdown file ``doc`` with the comparison
    report whose plots :func:`write_report` wrote into ``out`` as ``report``, linked relative to
    ``doc``. The section sits between ``<!-- tying compare: KEY -->`` and
    ``<!-- end tying compare: KEY -->``."""
    doc = Path(doc)
    begin, end = f"<!-- tying compare: {key} -->", f"<!-- end tying compare: {key} -->"
    prefix = Path(os.path.relpath(Path(out).resolve(), doc.resolve().parent)).as_posix() + f"/{report}-"
    block = f"{begin}\n{_markdown(records, title, prefix)}{end}"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(doc, text)
