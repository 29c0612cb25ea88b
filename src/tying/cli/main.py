"""``tying`` command: one sub-command per module of :mod:`tying.cli`."""

from __future__ import annotations

import typer

from tying.cli import lm
from tying.cli.bench import bench
from tying.cli.compare import compare
from tying.cli.demo import demo
from tying.cli.inspect import inspect_file

app = typer.Typer(
    name="tying",
    help="Weight tying for PyTorch: train tied vs untied models, inspect tied checkpoints.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("demo")(demo)
app.command("inspect")(inspect_file)
app.add_typer(lm.app, name="lm")
app.command("compare")(compare)
app.command("bench")(bench)

if __name__ == "__main__":  # pragma: no cover
    app()
