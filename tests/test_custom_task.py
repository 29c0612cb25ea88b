"""A task written outside tying runs under ``tying train`` and ``tying compare`` — progress,
resume, seeds, reports — found by import path (``task = "my_task:MyTask"``, the example in
``examples/custom_task``) or by a ``tying.tasks`` entry point of an installed package; the built-in
tasks are found the same way. What cannot be found is a one-line error naming the recipe file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tying
from tying.cli.main import app
from tying.recipes import RecipeError, find_task, load_recipe, read_metrics
from tying.tasks import BUILTIN_TASKS
from tying.training import Task, task_names

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_task"
runner = CliRunner()
WIDE = {"COLUMNS": "250"}


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's folder on the Python path, as ``PYTHONPATH=examples/custom_task`` puts it."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return EXAMPLE


def test_the_example_task_trains_resumes_and_reports_under_tying_train(on_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", str(on_path / "my_task.toml"), "--out", str(out), "--progress-every", "0"], env=WIDE)
    assert first.exit_code == 0, first.output
    assert "epoch 1: batch 16/16" in first.output and "best valid MSE" in first.output  # progress and the report table
    record = read_metrics(out)
    assert record is not None and record["task"] == "my_task:MyTask" and len(record["history"]) == 3
    assert record["unique_parameters"] == 16 * 4 + 4 + 16  # one weight matrix for encoder and decoder
    assert record["history"][-1]["valid_mse"] < record["history"][0]["valid_mse"]
    more = runner.invoke(app, ["train", str(on_path / "my_task.toml"), "--out", str(out), "--set", "train.epochs=4"], env=WIDE)
    assert more.exit_code == 0, more.output
    assert "resumed from" in more.output
    resumed = read_metrics(out)
    assert resumed is not None and resumed["history"][:3] == record["history"] and len(resumed["history"]) == 4


def test_the_example_task_compares_tied_and_untied_under_several_seeds(on_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare"
    configs = [str(on_path / "my_task.toml"), str(on_path / "my_task_untied.toml")]
    result = runner.invoke(app, ["compare", *configs, "--seeds", "2", "--out", str(out), "--name", "mine"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["my-task-tied", "my-task-tied-seed1112", "my-task-untied", "my-task-untied-seed1112"]
    report = (out / "mine.md").read_text()
    assert "| my-task-tied (2 seeds) | 148 | 84 |" in report and "| my-task-untied (2 seeds) | 148 | 148 |" in report
    assert (out / "mine-valid-mse.png").is_file()


def test_the_example_runs_from_the_shell_with_its_folder_on_pythonpath(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tying.__file__).parents[1]), str(EXAMPLE)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tying.cli.main", "train", str(EXAMPLE / "my_task.toml"), "--out", str(tmp_path / "run"), "--set", "train.epochs=1"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["task"] == "my_task:MyTask"


def _recipe(tmp_path: Path, task: str, extra: str = "") -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(f'name = "mine"\ntask = "{task}"\n{extra}')
    return path


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("no_such_module_23:Task", r"cannot import module 'no_such_module_23' \(No module named 'no_such_module_23'\); put the folder holding it on the Python path \(PYTHONPATH\) or install its package"),
        ("my_task:NoSuchClass", r"module 'my_task' \(.*my_task\.py\) has no attribute 'NoSuchClass'"),
        ("my_task:SubspaceModel", r"'my_task:SubspaceModel' is the class SubspaceModel, not a task \(a subclass of tying\.training\.Task\)"),
        ("my_task:torch", r"'my_task:torch' is a module, not a task"),
        ("my_task:", r"'my_task:' is not 'module:Class'"),
        ("no-such-task", r"no task 'no-such-task'; known tasks: autoencoder, .*lm, .*sgns, "),
    ],
)
def test_a_task_that_cannot_be_found_is_an_error_naming_the_recipe_file(on_path: Path, tmp_path: Path, task: str, message: str) -> None:
    path = _recipe(tmp_path, task)
    with pytest.raises(RecipeError, match=rf"^{path}: task = '{task}': {message}"):
        load_recipe(path)
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run")], env=WIDE)
    assert result.exit_code == 1 and "Traceback" not in result.output and "error: " in result.output


def test_the_tables_of_a_task_outside_tying_are_strict_too(on_path: Path, tmp_path: Path) -> None:
    path = _recipe(tmp_path, "my_task:MyTask", "[model]\ntie = \"yes\"\ncodes = 3\n")
    with pytest.raises(RecipeError, match=r"model\.tie = 'yes': Input should be a valid boolean.*; unknown key 'model\.codes' \(known: code, tie\)"):
        load_recipe(path)


def _install(site: Path, dist: str, entry_points: str, module: str = "", source: str = "") -> None:
    """A package as pip leaves it: a ``.dist-info`` folder with its entry points (and a module)."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    if module:
        (site / f"{module}.py").write_text(source)


PLUGIN = '''
from my_task import MyTask


class PluginTask(MyTask):
    name = "plugin-task"
'''


def test_an_installed_package_declares_its_task_as_an_entry_point(on_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _install(site, "tying_plugin_23", "[tying.tasks]\nplugin-task = plugin_task_23:PluginTask\n", "plugin_task_23", PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    assert "plugin-task" in task_names()
    path = _recipe(tmp_path, "plugin-task", '[train]\nepochs = 1\nlr = 0.02\n')
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run")], env=WIDE)
    assert result.exit_code == 0, result.output
    record = read_metrics(tmp_path / "run")
    assert record is not None and record["task"] == "plugin-task" and record["recipe"]["train"]["optimizer"] == "adamw"


def test_one_name_declared_as_two_classes_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _install(site, "tying_lm_clash_23", "[tying.tasks]\nlm = somewhere_else:LMTask\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(RecipeError, match=r"task 'lm' is declared as more than one class \(somewhere_else:LMTask, tying\.tasks\.lm:LMTask\); uninstall one"):
        find_task("lm")


def test_the_builtin_tasks_are_declared_as_entry_points_and_found_by_them() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["tying.tasks"] == BUILTIN_TASKS
    for name in BUILTIN_TASKS:
        cls = find_task(name)
        assert issubclass(cls, Task) and cls.name == name


def test_the_extending_doc_shows_the_example_as_it_is() -> None:
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", (ROOT / "docs" / "extending.md").read_text(), re.S | re.M)
    python, toml = ([code for lang, code in blocks if lang == kind] for kind in ("python", "toml"))
    module = (EXAMPLE / "my_task.py").read_text()
    assert python[0].startswith("from __future__") and module.endswith(python[0])  # the whole module after its docstring
    assert toml[0] == (EXAMPLE / "my_task.toml").read_text()
