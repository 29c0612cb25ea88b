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
    doc: Annotated[Path | None, typer.Option(help="Also write the report as a section of this markdown file (e.g. docs/RESULTS.md).")] = None,
    section: Annotated[str | None, typer.Option(help="Section key in --doc (default: the --out folder name).")] = None,
) -> None:
    """Train several recipes side by side (resumable) and write a report with plots.

    Each recipe not yet finished in --out is trained (interrupted ones resume); then summary.md,
    metrics.csv and the plots are written there, and optionally a section of --doc."""
    console = Console()
    try:
        recipes = [load_recipe(c, overrides or []) for c in configs]
        if not report_only:
            run_recipes(recipes, out, jobs=jobs, data_root=data_root, console=console)
        heading = title or ", ".join(r.name for r in recipes)
        records, _ = write_report(recipes, out, heading)
    except (RecipeError, FileNotFoundError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(rich_table(records, title=heading))
    missing = [r.name for r in recipes if r.name not in {rec["name"] for rec in records}]
    if missing:
        console.print(f"not finished yet (left out of the report): {', '.join(missing)}", highlight=False)
    console.print(f"wrote {out / 'summary.md'}, {out / 'metrics.csv'}, {out / 'valid_ppl.png'}, {out / 'test_vs_params.png'}", highlight=False)
    if doc is not None:
        update_results_doc(doc, section or out.name, records, out, heading)
        console.print(f"updated section {section or out.name!r} of {doc}", highlight=False)
