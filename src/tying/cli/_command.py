"""The ``tying ...`` command line of the running sub-command, rebuilt from its parsed options, so
a result file records exactly how to reproduce it (whatever launched the process)."""

from __future__ import annotations

import shlex

import typer


def invoked_command(ctx: typer.Context) -> str:
    """``tying <command> [options that differ from their defaults]`` for a sub-command's context."""
    words = ["tying", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value == param.default:
            continue
        if param.param_type_name == "argument":
            words.append(str(value))
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else (param.secondary_opts or param.opts)[0])
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)
