"""The layout the tasks live in (issue 23): the engine knows no task, tasks do not know each other,
the models need torch only, and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tying

SRC = Path(tying.__file__).resolve().parent
CHECKED = ("training", "tasks", "recipes", "cli", "data", "models")
TASKS = sorted(p.name for p in (SRC / "tasks").iterdir() if (p / "__init__.py").is_file())


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (SRC / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def _name(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


def test_the_task_packages() -> None:
    assert TASKS == ["autoencoder", "cdef", "deqlinear", "lm", "recsys", "segmentation", "sgns", "translation"]


@pytest.mark.parametrize("module", _modules("training"), ids=_name)
def test_the_engine_imports_no_task_and_nothing_above_it(module: Path) -> None:
    above = sorted(name for name in _imports(module) if name.startswith(("tying.tasks", "tying.recipes", "tying.cli")))
    assert not above, f"{_name(module)} imports {above}"


@pytest.mark.parametrize("task", TASKS)
def test_no_task_package_imports_another(task: str) -> None:
    others = tuple(f"tying.tasks.{other}" for other in TASKS if other != task)
    for module in _modules(f"tasks/{task}"):
        found = sorted(name for name in _imports(module) if name.startswith(others) or name in ("tying.recipes", "tying.cli") or name.startswith(("tying.recipes.", "tying.cli.")))
        assert not found, f"{_name(module)} imports {found}"


@pytest.mark.parametrize("module", _modules("models") + [SRC / "constraints.py"], ids=_name)
def test_models_import_what_they_use_and_need_torch_only(module: Path) -> None:
    names = _imports(module)
    assert "tying" not in names, f"{_name(module)} imports tying whole; import the modules it uses (from tying.core import tie)"
    assert not {n for n in names if n.split(".")[0] in ("pydantic", "rich", "typer", "matplotlib")}, names


def test_importing_the_models_loads_no_pydantic() -> None:
    code = "import sys, tying.models, tying.constraints; assert 'pydantic' not in sys.modules, sorted(m for m in sys.modules if 'pydantic' in m)"
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module", _modules(*CHECKED), ids=_name)
def test_no_module_over_400_lines_nor_function_over_60(module: Path) -> None:
    text = module.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 400, f"{_name(module)}: {len(text.splitlines())} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, f"{_name(module)}: {long}"
