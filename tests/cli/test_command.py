"""The command line a result file records (tying.cli._command.invoked_command)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tying.cli._command import invoked_command

app = typer.Typer()
recorded: list[str] = []


@app.command()
def train(ctx: typer.Context, overrides: list[str] = typer.Argument(None), out: Path = typer.Option(None), threads: int = typer.Option(None)) -> None:  # noqa: B008
    recorded.append(invoked_command(ctx))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--threads", "1"], "tying --threads 1"),
        (["--out", "{cwd}/runs/a b", "x=1"], "tying x=1 --out 'runs/a b'"),
        (["--out", "/elsewhere/run"], "tying --out /elsewhere/run"),
    ],
)
def test_records_non_default_options_and_relativizes_paths_under_cwd(args, expected, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    recorded.clear()
    result = CliRunner().invoke(app, [a.replace("{cwd}", str(tmp_path)) for a in args])
    assert result.exit_code == 0, result.output
    assert recorded == [expected]
