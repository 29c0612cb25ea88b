"""``tying train``: train one recipe of any task; ``tying list``: the built-in recipes.
(``tying lm train`` and ``tying lm list``, their names before recipes named their task, remain.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tying.cli._command import invoked_command
from tying.cli._help import Command, Group
from tying.cli._outputs import check_outputs
from tying.cli.failures import expected_errors, fail, print_table

__all__ = ["train", "list_recipes", "lm_app"]


#: How the old spelling (``--config NAME`` and bare ``KEY=VALUE`` words) is answered, until it goes.
_DEPRECATED = "`tying train --config NAME KEY=VALUE` is deprecated and goes in the next release; write `tying train NAME --set KEY=VALUE`"


def _recipe_and_overrides(words: list[str], config: str | None, sets: list[str]) -> tuple[str, list[str]]:
    """The recipe and its overrides from the positional words, ``--config`` and ``--set``,
    accepting (with a warning) the old spelling: ``--config NAME`` and bare ``KEY=VALUE`` words."""
    given = ([config] if config is not None else []) + words
    if not given or "=" in given[0]:
        raise fail("no recipe: name a built-in recipe (see `tying list`) or a .toml file, e.g. `tying train demo-tied --set train.epochs=2`")
    recipe, extra = given[0], given[1:]
    stray = [w for w in extra if "=" not in w]
    if stray:
        raise fail(f"unexpected argument {stray[0]!r}: `tying train` trains one recipe (`tying compare` takes several); overrides are --set KEY=VALUE")
    if config is not None or extra:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(_DEPRECATED)}", highlight=False, soft_wrap=True)
    return recipe, [*extra, *sets]


def train(
    ctx: typer.Context,
    words: Annotated[
        list[str] | None, typer.Argument(metavar="RECIPE", help="A built-in recipe (see `tying list`) or a .toml file.", show_default=False)
    ] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", hidden=True, help="Deprecated: the recipe, now the argument.")] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a setting of the recipe (repeatable), e.g. --set train.epochs=2.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (checkpoints, metrics.json). Default: runs/TASK/NAME.")] = None,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="The run's name in its record and reports (default: the recipe's; `tying compare --seeds` names each seed's run).")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Folder holding the recipe's data folder (default $TYING_DATA_ROOT or ~/tying-data).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from a checkpoint in --out if there is one.")] = True,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads (default: torch's choice).")] = None,
    progress_every: Annotated[
        float, typer.Option(min=0.0, metavar="SECONDS", help="Seconds between progress lines when the output is not a terminal (a log file).")
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
    recipe_ref, overrides = _recipe_and_overrides(words or [], config, sets or [])
    command = invoked_command(ctx, words=[recipe_ref], config=None, sets=overrides)  # recorded in today's spelling
    with expected_errors(f"resume with: {command}"):
        recipe = load_recipe(recipe_ref, overrides)
        folder = out or Path("runs") / recipe.task.replace(":", ".") / (name or recipe.name)
        check_outputs(folders=[("--out" if out else "run folder", folder)])
        record = train_recipe(
            recipe, folder, data_root=data_root, resume=resume, command=command, console=console, name=name, progress_every=progress_every,
        )
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        for table in rich_table([Row(record["name"], [record])]):
            print_table(console, table)


def list_recipes() -> None:
    """The built-in recipes, with their task, data settings, epochs and description."""
    from tying.recipes import builtin_recipes, load_recipe
    from tying.recipes.terminal import name_table

    body = []
    for name in builtin_recipes():
        recipe = load_recipe(name)
        data = recipe.tables.get("data")
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in data.model_dump(mode="json").items()) if data else "-"
        body.append([name, recipe.task, settings, str(recipe.train.epochs), recipe.description])
    print_table(Console(), name_table(["recipe", "task", "data settings", "epochs", "description"], body, justify="left"))


lm_app = typer.Typer(help="Language-model recipes (the same as `tying train` and `tying list`).", no_args_is_help=True, cls=Group)
lm_app.command("train", cls=Command)(train)
lm_app.command("list", cls=Command)(list_recipes)
