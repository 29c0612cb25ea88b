"""``tying inspect PATH``: the tensors and tie groups of a safetensors checkpoint, the declared
ties of a transformers ``save_pretrained`` folder against what its files hold, or the initializers
an ONNX file stores twice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tying._text import plural
from tying.accounting import format_bytes
from tying.checkpoint import CheckpointInfo, read_checkpoint
from tying.errors import CheckpointError
from tying.hf import PretrainedInfo, read_pretrained

_FORMATS = {
    "tying": "tying (declared tie spec + aliases in the header)",
    "safetensors-save_model": "safetensors save_model ({dropped: kept} aliases in the metadata)",
    "plain": "plain safetensors (no alias information)",
}


def render(info: CheckpointInfo, console: Console) -> None:
    """Print ``info`` as a summary line, a tensor table and a tie-group table."""
    stored = sum(t.nbytes for t in info.tensors)
    console.print(f"[bold]{escape(str(info.path))}[/bold]")
    console.print(
        f"format: {_FORMATS[info.format]}\n"
        f"file: {info.file_size:,} bytes = 8 + header {info.header_size:,} + tensors {stored:,}"
    )
    tensors = Table(title=f"{plural(len(info.tensors), 'stored tensor')}", title_justify="left")
    for col, justify in (("name", "left"), ("dtype", "left"), ("shape", "left"), ("size", "right"), ("read as", "left")):
        tensors.add_column(col, justify=justify)  # type: ignore[arg-type]
    readers: dict[str, list[str]] = {}
    for dropped, kept in info.aliases.items():
        readers.setdefault(kept, []).append(dropped)
    for t in info.tensors:
        shape = "[" + ", ".join(map(str, t.shape)) + "]"
        # Names come from the file: escaped, so a name like "[/]" prints as written, never as markup.
        tensors.add_row(escape(t.name), t.dtype, shape, format_bytes(t.nbytes), escape(", ".join(readers.get(t.name, []))))
    console.print(tensors)

    if info.spec is not None and info.spec.ties:
        table = Table(title=f"{plural(len(info.spec.groups()), 'declared tie group')}", title_justify="left")
        for col in ("source (stored)", "computed by", "targets", "transform"):
            table.add_column(col)
        for source, ties in info.spec.groups().items():
            by = info.spec.parametrizations.get(source)
            how = "-" if by is None else f"{by['kind']}(" + ", ".join(f"{k}={v}" for k, v in by.items() if k != "kind") + ")"
            labels = "\n".join(t.make_transform().label() if t.transform else "-" for t in ties)
            table.add_row(escape(source), escape(how), escape("\n".join(t.target for t in ties)), escape(labels))
        console.print(table)
    groups = info.groups()
    if groups:
        saved = sum(next(t.nbytes for t in info.tensors if t.name == g[0]) * (len(g) - 1) for g in groups)
        console.print(f"{plural(len(groups), 'alias group')}: {plural(len(info.aliases), 'state_dict entry', 'state_dict entries')} stored once, {format_bytes(saved)} not written")
    elif info.format == "plain":
        console.print("no alias information: every state_dict entry is stored separately")


_STATUS = {
    "dropped": "not stored: filled from its group on load",
    "equal copies": "stored twice, equal values",
    "different copies": "stored twice with DIFFERENT values: the declared tie does not hold in this file",
    "source dropped": "only the target is stored: the source is filled from it on load",
    "none stored": "no member of the group is stored: freshly initialised on load",
}


def render_pretrained(info: PretrainedInfo, console: Console) -> None:
    """Print a transformers folder's config tie flags, its class's tied-weights keys, and each
    declared tie against the files; then one line per weight file."""
    console.print(f"[bold]{escape(str(info.folder))}[/bold]")
    flags = ", ".join(f"{k}={v}" for k, v in info.config_flags.items()) or "none"
    console.print(
        escape(f"transformers checkpoint: {info.architecture or '?'} (model_type {info.model_type or '?'})\nconfig tie flags: {flags}"),
        highlight=False,
    )
    if info.unresolved is not None:
        console.print(escape(f"declared ties not resolved: {info.unresolved}"), highlight=False)
    else:
        console.print(
            escape(f"class tied-weights keys (transformers {info.transformers_version}): {info.class_keys!r}"), highlight=False
        )
        if info.ties:
            table = Table(title=f"{plural(len(info.ties), 'declared tie')} vs the files", title_justify="left")
            for col in ("target", "source", "in the files"):
                table.add_column(col)
            for t in info.ties:
                table.add_row(escape(t.target), escape(t.source), _STATUS[t.status])
            console.print(table)
        else:
            console.print("no declared ties (the config unties them, or the class declares none)")
        for label, keys in (("model keys no file holds", info.missing), ("stored keys the model lacks", info.unexpected)):
            if keys:
                console.print(escape(f"{label}: {', '.join(keys)}"), highlight=False)
    for f in info.files:
        stored = sum(t.nbytes for t in f.tensors)
        console.print(escape(f"{f.path.name}: {plural(len(f.tensors), 'tensor')}, {format_bytes(stored)}, {_FORMATS[f.format]}"), highlight=False)


def render_onnx(path: Path, console: Console) -> None:
    """Print an ONNX file's initializers stored twice (a tied matrix written as a copy or as its
    transpose) and the tie spec :func:`tying.export.to_onnx` wrote into its metadata."""
    try:
        from tying.export import onnx_duplicates, onnx_spec

        duplicates, spec = onnx_duplicates(path), onnx_spec(path)
    except ImportError as exc:
        raise CheckpointError(f"reading {str(path)!r} needs onnx ({exc}); pip install tying[export]") from None
    except Exception as exc:  # onnx raises its own error types (DecodeError, ...)
        raise CheckpointError(f"{str(path)!r} is not a readable ONNX model: {exc}") from None
    console.print(f"[bold]{escape(str(path))}[/bold]")
    console.print(escape(f"tie spec (metadata_props 'tying'): {', '.join(t.describe() for t in spec.ties) if spec else 'none'}"), highlight=False)
    if not duplicates:
        console.print("no initializer is stored twice")
        return
    console.print(f"{plural(len(duplicates), 'duplicated initializer')} ({format_bytes(sum(d.nbytes for d in duplicates))} stored twice):")
    for d in duplicates:
        console.print(escape(f"  {d}"), highlight=False)


def inspect_file(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="PATH",
            help="A .safetensors file (tying.save, safetensors save_model, or plain), a transformers save_pretrained folder, "
            "or an .onnx file (duplicated initializers)."
        ),
    ],
) -> None:
    """Show the tensors, shapes, dtypes, sizes and tie groups of a safetensors checkpoint; for a
    transformers folder, the ties its config and model class declare against what its files hold."""
    console = Console()
    try:
        if file.is_dir():
            render_pretrained(read_pretrained(file), console)
        elif file.suffix == ".onnx":
            render_onnx(file, console)
        else:
            render(read_checkpoint(file), console)
    except CheckpointError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
