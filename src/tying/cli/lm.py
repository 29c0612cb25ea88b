"""``tying lm``: train a language-model recipe (``tying lm train``) and list the built-in ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from tying.cli._command import invoked_command
from tying.recipes import RecipeError, builtin_recipes, load_recipe, train_lm
from tying.recipes.compare import rich_table

__all__ = ["app"]

app = typer.Typer(help="Language-model recipes: train one, list the built-in ones.", no_args_is_help=True)


@app.command("train")
def train(
    ctx: typer.Context,
    config: Annotated[str, typer.Option("--config", "-c", help="Built-in recipe name (see `tying lm list`) or a .toml file.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Settings to override, KEY=VALUE (e.g. train.epochs=2 model.tie=true).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (checkpoints, metrics.json). Default: runs/lm/<name>.")] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Folder holding the recipe's corpus folder (default $TYING_DATA_ROOT or ../shared/data).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from a checkpoint in --out if there is one.")] = True,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (default: torch's choice).")] = None,
) -> None:
    """Train one language-model recipe; writes checkpoints and metrics.json into --out."""
    console = Console()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        recipe = load_recipe(config, overrides or [])
        record = train_lm(
            recipe,
            out or Path("runs/lm") / recipe.name,
            data_root=data_root,
            command=invoked_command(ctx),
            console=console,
        )
    except (RecipeError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(rich_table([record]))


@app.command("list")
def list_recipes() -> None:
    """The built-in recipes, with their corpus and description."""
    table = Table("recipe", "corpus", "description")
    for name in builtin_recipes():
        recipe = load_recipe(name)
        table.add_row(name, recipe.corpus, recipe.description)
    Console().print(table)
