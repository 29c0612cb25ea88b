"""The ``tying`` command-line tool (the ``cli`` extra; training commands need ``experiments``).

:func:`main` is the console-script entry point: without the extra a command needs, it says in
one line which one to install instead of showing an ``ImportError`` traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main", "EXTRAS"]

#: Top-level module -> the extra of ``pyproject.toml`` that installs it.
EXTRAS = {"typer": "cli", "rich": "cli", "click": "cli", "matplotlib": "experiments", "pydantic": "experiments", "tomli": "experiments"}


def main() -> None:
    """Run the ``tying`` command line."""
    try:
        from tying.cli.main import app

        app()
    except ModuleNotFoundError as exc:
        module = (exc.name or "").partition(".")[0]
        extra = EXTRAS.get(module)
        if extra is None:
            raise
        print(
            f"error: this tying command needs the '{extra}' extra (missing module {module!r}); "
            f"from a checkout: pip install -e \".[{extra}]\"",
            file=sys.stderr,
        )
        sys.exit(1)
