"""``tying compare``: train several recipes (resumably) and report them side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tying.recipes import RecipeError, load_recipe
from tying.recipes.compare import rich_table, run_recipes, update_results_doc, write_report

__all__ = ["compare"]


def compare(
    configs: Annotated[list[str], typer.Argument(help="Recipes (built-in names or .toml files), in report order.")],
    out: Annotated[Path, typer.Option(help="Folder holding one sub-folder per run, and the report.")] = Path("runs/compare"),
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE applied to every recipe (repeatable), e.g. train.epochs=2.")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Runs trained at once, each in its own process.")] = 1,
    data_root: Annotated[
        Path | None, typer.Option(help="Folder holding the corpus folders (default $TYING_DATA_ROOT or ../shared/data).")
    ] = None,
    report_only: Annotated[bool, typer.Option("--report-only", help="Train nothing; rebuild the report from metrics.json files.")] = False,
    title: Annotated[str | None, typer.Option(help="Report title (default: the run names).")] = None,
    name: Annotated[
        str | None, typer.Option(help="Report name: <name>.md, <name>.csv, <name>-*.png in --out, and the --doc section key. (default: the --out folder name)")
    ] = None,
    doc: Annotated[Path | None, typer.Option(help="Also write the report as a section of this markdown file (e.g. docs/RESULTS.md).")] = None,
) -> None:
    """Train several recipes side by side (resumable) and write a report with plots.

    Each recipe not yet finished in --out is trained (interrupted ones resume); then the report
    (NAME.md, NAME.csv, plots) is written there, and optionally as section NAME of --doc."""
    console = Console()
    try:
        recipes = [load_recipe(c, overrides or []) for c in configs]
        if not report_only:
            run_recipes(recipes, out, jobs=jobs, data_root=data_root, console=console)
        heading = title or ", ".join(r.name for r in recipes)
        report = name or out.name
        records = write_report(recipes, out, heading, report)
    except (RecipeError, FileNotFoundError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(rich_table(records, title=heading))
    missing = [r.name for r in recipes if r.name not in {rec["name"] for rec in records}]
    if missing:
        console.print(f"not finished yet (left out of the report): {', '.join(missing)}", highlight=False)
    written = [out / f"{report}.md", out / f"{report}.csv", out / f"{report}-valid-ppl.png", out / f"{report}-test-vs-params.png"]
    console.print(f"wrote {', '.join(map(str, written))}", highlight=False)
    if doc is not None:
        update_results_doc(doc, report, records, out, heading, report)
        console.print(f"updated section {report!r} of {doc}", highlight=False)
