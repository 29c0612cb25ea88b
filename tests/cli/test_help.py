"""One spelling of a recipe and its overrides for `tying train`, `compare` and `demo` (the old
`train --config NAME KEY=VALUE` still accepted, with a warning), and help screens with real
placeholders and unbroken sentences at 80 columns."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from tying.cli.main import COMMANDS, app
from tying.recipes import read_metrics

runner = CliRunner()
HELPS = [[], *([name] for name in COMMANDS), ["lm"], ["lm", "train"], ["lm", "list"]]
QUICK = ["train.epochs=1", "train.max_batches=2", "train.bptt=8", "model.embedding_size=8", "model.hidden_size=8", "model.num_layers=1"]


@pytest.mark.parametrize("args", HELPS, ids=lambda a: " ".join(a) or "tying")
def test_help_shows_placeholders_not_python_types_within_80_columns(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    assert not re.search(r"<(bool|str|int|float|path|list)[^>]*>|\{\w+\}|…", result.output), result.output


def _paragraphs(args: list[str]) -> list[str]:
    """The paragraphs of the help of ``tying ARGS``, each as one line of words."""
    click_command = typer.main.get_command(app)
    for name in args:
        click_command = click_command.commands[name]  # type: ignore[attr-defined]
    return [" ".join(p.split()) for p in (click_command.help or "").split("\n\n")]


@pytest.mark.parametrize("args", HELPS, ids=lambda a: " ".join(a) or "tying")
def test_help_sentences_are_not_broken_where_the_source_broke_them(args: list[str]) -> None:
    # Wide enough for nothing to wrap: every paragraph of the help is then one line of the screen.
    output = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "1000"}).output
    lines = [" ".join(line.strip(" │").split()) for line in output.splitlines()]
    for paragraph in _paragraphs(args):
        assert paragraph in lines, (paragraph, output)
    if not args:  # the command list: each command's first paragraph on its line
        for name, function in COMMANDS.items():
            first = " ".join((function.__doc__ or "").split("\n\n")[0].split())
            assert any(line.startswith(name) and line.endswith(first) for line in lines), (name, output)


def test_train_takes_the_recipe_as_an_argument_and_overrides_as_set(tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "demo-tied", *(f"--set={s}" for s in QUICK), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "deprecated" not in result.output
    command = read_metrics(out)["command"]
    assert command.startswith("tying train demo-tied --set train.epochs=1 --set train.max_batches=2 ")


def test_the_old_spelling_still_trains_with_a_warning_and_records_the_new_one(tmp_path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", "demo-tied", *QUICK, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: `tying train --config NAME KEY=VALUE` is deprecated") and "tying train NAME --set KEY=VALUE" in result.stderr
    assert read_metrics(out)["command"].startswith("tying train demo-tied --set train.epochs=1 --set train.max_batches=2 ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "error: no recipe: name a built-in recipe (see `tying list`) or a .toml file, e.g. `tying train demo-tied --set train.epochs=2`"),
        (["train", "train.epochs=2"], "error: no recipe: name a built-in recipe"),
        (["train", "demo-tied", "demo-untied"], "error: unexpected argument 'demo-untied': `tying train` trains one recipe (`tying compare` takes several)"),
    ],
)
def test_a_missing_or_extra_recipe_says_what_to_write(args: list[str], message: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1, result.output
    assert list(tmp_path.iterdir()) == []


def test_demo_takes_set_overrides_for_both_recipes(tmp_path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--epochs", "1", "--set", "train.max_batches=2", "--set", "model.dropout=0.0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("demo-tied", "demo-untied"):
        record = read_metrics(out / name)
        assert record["recipe"]["model"]["dropout"] == 0.0 and record["recipe"]["train"]["max_batches"] == 2
        assert "--set train.max_batches=2 --set model.dropout=0.0" in record["command"]
