"""The ``tying ...`` command line of the running sub-command, rebuilt from its parsed options, so
a result file records exactly how to reproduce it (whatever launched the process)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import typer


def _word(value: object) -> str:
    # An absolute path inside the working directory is recorded relative to it, so a record made
    # by a script that passed absolute paths still reads as a command to run from the checkout.
    if isinstance(value, Path) and value.is_absolute() and value.is_relative_to(Path.cwd()):
        return os.path.relpath(value)
    return str(value)


def invoked_command(ctx: typer.Context, **values: Any) -> str:
    """``tying <command> [options that differ from their defaults]`` for a sub-command's context
    (nested groups such as ``tying lm train`` included); ``values`` replace parsed values by
    parameter name (so a command given in a deprecated spelling is recorded in today's)."""
    given = {**ctx.params, **values}
    names: list[str] = []
    c: Any = ctx
    while c.parent is not None:
        names.insert(0, c.info_name or "")
        c = c.parent
    words = ["tying", *names]
    for param in ctx.command.params:
        value = given.get(param.name or "")
        if value is None or value == param.default or value in ((), []):
            continue
        shown = [_word(v) for v in value] if isinstance(value, (list, tuple)) else [_word(value)]
        if param.param_type_name == "argument":
            words += shown
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else (param.secondary_opts or param.opts)[0])
        else:
            words += [w for v in shown for w in (param.opts[0], v)]
    return shlex.join(words)
