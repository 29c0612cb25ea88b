"""``tying`` command: one sub-command per module of :mod:`tying.cli`."""

from __future__ import annotations

from typing import Annotated

import typer

import tying
from tying.cli.bench import bench
from tying.cli.compare import compare
from tying.cli.demo import demo
from tying.cli.inspect import inspect_file
from tying.cli.train import list_recipes, lm_app, train
from tying.cli.translate import translate_command

app = typer.Typer(
    name="tying",
    help="Weight tying for PyTorch: train tied vs untied models, inspect tied checkpoints.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tying {tying.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Weight tying for PyTorch: train tied vs untied models, inspect tied checkpoints."""


app.command("demo")(demo)
app.command("train")(train)
app.command("compare")(compare)
app.command("list")(list_recipes)
app.command("inspect")(inspect_file)
app.add_typer(lm_app, name="lm")
app.command("bench")(bench)
app.command("translate")(translate_command)

if __name__ == "__main__":  # pragma: no cover
    app()
