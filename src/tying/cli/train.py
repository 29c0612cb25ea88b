"""``tying train``: train one recipe of any task; ``tying list``: the built-in recipes.
(``tying lm train`` and ``tying lm list``, their names before recipes named their task, remain.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tying.cli._command import invoked_command
from tying.cli.failures import expected_errors, print_table

__all__ = ["train", "list_recipes", "lm_app"]


def train(
    ctx: typer.Context,
    config: Annotated[str, typer.Option("--config", "-c", help="Built-in recipe name (see `tying list`) or a .toml file.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Settings to override, KEY=VALUE (e.g. train.epochs=2 model.tie=true).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (checkpoints, metrics.json). Default: runs/<task>/<name>.")] = None,
    name: Annotated[
        str | None, typer.Option(help="The run's name in its record and reports (default: the recipe's; `tying compare --seeds` names each seed's run).")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Folder holding the recipe's data folder (default $TYING_DATA_ROOT or ../shared/data).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from a checkpoint in --out if there is one.")] = True,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (default: torch's choice).")] = None,
    progress_every: Annotated[
        float, typer.Option(min=0.0, help="Seconds between progress lines when the output is not a terminal (a log file).")
    ] = 30.0,
) -> None:
    """Train one recipe; writes checkpoints and metrics.json into --out. Ctrl-C saves a
    resumable point (the same command continues it)."""
    import torch

    from tying.recipes import load_recipe, train_recipe
    from tying.recipes.report import Row, rich_table

    console = Console()
    if threads is not None:
        torch.set_num_threads(threads)
    command = invoked_command(ctx)
    with expected_errors(f"resume with: {command}"):
        recipe = load_recipe(config, overrides or [])
        record = train_recipe(
            recipe, out or Path("runs") / recipe.task.replace(":", ".") / (name or recipe.name), data_root=data_root, resume=resume, command=command,
            console=console, name=name, progress_every=progress_every,
        )
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        for table in rich_table([Row(record["name"], [record])]):
            print_table(console, table)


def list_recipes() -> None:
    """The built-in recipes, with their task, data and description."""
    from tying.recipes import builtin_recipes, load_recipe

    table = Table("recipe", "task", "data", "epochs", "description")
    for name in builtin_recipes():
        recipe = load_recipe(name)
        data = recipe.tables.get("data")
        table.add_row(name, recipe.task, ", ".join(map(str, data.model_dump().values())) if data else "-", str(recipe.train.epochs), recipe.description)
    print_table(Console(), table)


lm_app = typer.Typer(help="Language-model recipes (the same as `tying train` and `tying list`).", no_args_is_help=True)
lm_app.command("train")(train)
lm_app.command("list")(list_recipes)
