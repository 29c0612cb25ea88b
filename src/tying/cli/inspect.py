"""``tying inspect FILE``: the tensors and tie groups of a safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tying.checkpoint import CheckpointInfo, read_checkpoint
from tying.discovery import _human
from tying.errors import CheckpointError

_FORMATS = {
    "tying": "tying (declared tie spec + aliases in the header)",
    "safetensors-save_model": "safetensors save_model ({dropped: kept} aliases in the metadata)",
    "plain": "plain safetensors (no alias information)",
}


def render(info: CheckpointInfo, console: Console) -> None:
    """Print ``info`` as a summary line, a tensor table and a tie-group table."""
    stored = sum(t.nbytes for t in info.tensors)
    console.print(f"[bold]{info.path}[/bold]")
    console.print(
        f"format: {_FORMATS[info.format]}\n"
        f"file: {info.file_size:,} bytes = 8 + header {info.header_size:,} + tensors {stored:,}"
    )
    tensors = Table(title=f"{len(info.tensors)} stored tensors", title_justify="left")
    for col, justify in (("name", "left"), ("dtype", "left"), ("shape", "left"), ("size", "right"), ("read as", "left")):
        tensors.add_column(col, justify=justify)  # type: ignore[arg-type]
    readers: dict[str, list[str]] = {}
    for dropped, kept in info.aliases.items():
        readers.setdefault(kept, []).append(dropped)
    for t in info.tensors:
        shape = "[" + ", ".join(map(str, t.shape)) + "]"
        tensors.add_row(t.name, t.dtype, shape, _human(t.nbytes), ", ".join(readers.get(t.name, [])))
    console.print(tensors)

    if info.spec is not None and info.spec.ties:
        table = Table(title=f"{len(info.spec.groups())} declared tie groups", title_justify="left")
        for col in ("source (stored)", "targets", "transform"):
            table.add_column(col)
        for source, ties in info.spec.groups().items():
            table.add_row(source, "\n".join(t.target for t in ties), "\n".join(t.transform or "-" for t in ties))
        console.print(table)
    groups = info.groups()
    if groups:
        saved = sum(next(t.nbytes for t in info.tensors if t.name == g[0]) * (len(g) - 1) for g in groups)
        console.print(f"{len(groups)} alias groups: {len(info.aliases)} state_dict entries stored once, {_human(saved)} not written")
    elif info.format == "plain":
        console.print("no alias information: every state_dict entry is stored separately")


def inspect_file(
    file: Annotated[Path, typer.Argument(help="A .safetensors file (tying.save, safetensors save_model, or plain).")],
) -> None:
    """Show the tensors, shapes, dtypes, sizes and tie groups of a safetensors checkpoint."""
    console = Console()
    try:
        info = read_checkpoint(file)
    except CheckpointError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    render(info, console)
