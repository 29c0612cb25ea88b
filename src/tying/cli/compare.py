"""``tying compare``: train several recipes (resumably, optionally under several seeds) and report
them side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tying.cli._command import invoked_command
from tying.cli._outputs import check_outputs, report_outputs
from tying.cli.failures import expected_errors, print_table

__all__ = ["compare"]


def compare(
    ctx: typer.Context,
    configs: Annotated[
        list[str], typer.Argument(metavar="RECIPE...", help="Recipes (built-in names, see `tying list`, or .toml files), in report order.")
    ],
    out: Annotated[Path, typer.Option(help="Folder holding one sub-folder per run, and the report.")] = Path("runs/compare"),
    overrides: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a setting of every recipe (repeatable), e.g. --set train.epochs=2.")
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Train each recipe under this many seeds (its train.seed, +1, ...); report mean ± sd.")] = 1,
    jobs: Annotated[int, typer.Option(min=1, help="Runs trained at once, each in its own process.")] = 1,
    data_root: Annotated[
        Path | None, typer.Option(help="Folder holding the data folders (default $TYING_DATA_ROOT or ~/tying-data).")
    ] = None,
    report_only: Annotated[bool, typer.Option("--report-only", help="Train nothing; rebuild the report from metrics.json files.")] = False,
    title: Annotated[str | None, typer.Option(metavar="TEXT", help="Report title (default: the run names).")] = None,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Report name: NAME.md, NAME.csv, NAME-*.png in --out, and the --doc section key (default: the --out folder name).")
    ] = None,
    doc: Annotated[Path | None, typer.Option(help="Also write the report as a section of this markdown file (e.g. docs/RESULTS.md).")] = None,
) -> None:
    """Train several recipes side by side (resumable) and write a report with plots.

    Each run not yet finished in --out is trained (interrupted ones resume); then the report
    (NAME.md, NAME.csv, plots) is written there, and optionally as section NAME of --doc. A run
    in --out trained with other settings is an error, not reused."""
    from tying.recipes import expand_seeds, load_recipe, run_recipes
    from tying.recipes.report import THROUGHPUT_NOTE, rich_table, unfinished, update_results_doc, write_report
    from tying.recipes.run import changed_runs

    console = Console()
    with expected_errors(f"run the same command to resume: {invoked_command(ctx)}"):
        recipes = [load_recipe(c, overrides or []) for c in configs]
        runs = expand_seeds(recipes, seeds)
        report = name or out.name
        folders = [("--out", out), *(("run folder", out / r.name) for r in runs if not report_only)]
        check_outputs(folders, [*report_outputs(out, report), *([("--doc", doc)] if doc is not None else [])])
        if report_only:
            for changed in changed_runs(runs, out):  # reported as stored: say what differs
                Console(stderr=True).print(
                    f"[yellow]warning:[/yellow] run {escape(changed)} was trained with other settings than requested; the report shows it as stored",
                    highlight=False, soft_wrap=True,
                )
        else:
            run_recipes(runs, out, jobs=jobs, data_root=data_root, console=console)
        heading = title or ", ".join(r.name for r in recipes)
        rows, written = write_report(runs, out, heading, report)
        missing = unfinished(runs, out)
        if doc is not None:
            update_results_doc(doc, report, rows, out, heading, report, missing)
    for table in rich_table(rows, title=heading):
        print_table(console, table)
    console.print(THROUGHPUT_NOTE, highlight=False)
    if missing:
        console.print(f"not finished yet (left out of the report): {', '.join(missing)}", highlight=False)
    console.print(f"wrote {', '.join(map(str, written))}", highlight=False)
    if doc is not None:
        console.print(f"updated section {report!r} of {doc}", highlight=False)
