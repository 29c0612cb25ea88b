"""``tying`` command: one sub-command per module of :mod:`tying.cli`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

import tying
from tying.cli._help import Command, Group
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
    cls=Group,
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


#: The sub-commands, in the order ``tying --help`` lists them (``tying lm`` after them).
COMMANDS: dict[str, Callable[..., None]] = {
    "demo": demo, "train": train, "compare": compare, "list": list_recipes, "inspect": inspect_file, "bench": bench, "translate": translate_command,
}  # fmt: skip
for name, command in COMMANDS.items():
    app.command(name, cls=Command)(command)
app.add_typer(lm_app, name="lm")

if __name__ == "__main__":  # pragma: no cover
    app()
