"""The library's layout, checked from its source (ast): small modules and functions, and imports
that point one way — the core never imports its integrations or the applications built on it.

The size checks cover the modules listed in ``SIZED`` (the core); the applications
(``cli``, ``training``, ``tasks``, ``recipes``, ...) join the list as they are laid out."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import tying

SRC = Path(tying.__file__).resolve().parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: Modules held to the size limits, so far: the core laid out by issue 23 and its integration
#: with transformers (paths relative to src/tying).
SIZED = [
    "__init__.py",
    "_paths.py",
    "_unionfind.py",
    "accounting.py",
    "checkpoint/__init__.py",
    "checkpoint/folder.py",
    "checkpoint/loader.py",
    "checkpoint/plan.py",
    "checkpoint/reader.py",
    "checkpoint/wrapped.py",
    "checkpoint/writer.py",
    "checks.py",
    "core.py",
    "discovery.py",
    "errors.py",
    "export.py",
    "graph.py",
    "hf.py",
    "hf_trainer.py",
    "integrations.py",
    "materialize.py",
    "nn/__init__.py",
    "nn/implicit.py",
    "nn/layers.py",
    "optim.py",
    "resize/__init__.py",
    "resize/conventions.py",
    "resize/plan.py",
    "resize/sites.py",
    "quant.py",
    "sharing.py",
    "spec.py",
    "stateless.py",
    "transforms.py",
    "verification.py",
]
#: The core: the library every application builds on.
#: The integrations with other libraries (each imports its library, lazily or not) are not core;
#: their public API is their own ``__all__`` (``tying.hf.declare_ties``, ``tying.quant.quantize_``).
INTEGRATIONS = ("hf.py", "hf_trainer.py", "quant.py", "export.py")
CORE = [*(m for m in SIZED if m not in INTEGRATIONS), "_io.py", "distributed.py", "functional.py", "machine.py"]
#: Public names of core modules that ``tying/__init__`` does not re-export: the writer behind
#: ``tying.distributed.save``, types of public fields and arguments, the layer-sharing strategies,
#: the layers of :mod:`tying.nn` (public as ``tying.nn.X``).
NN_LAYERS = {"TiedOutput", "JointOutput", "JointActivation", "LockedDropout", "embedding_dropout", "Implicit", "SolverStats"}
PUBLIC_ELSEWHERE = {"save_state_dict", "TensorInfo", "RowInit", "STRATEGIES", "Strategy", "is_norm", *NN_LAYERS}
#: What the core never imports: its integrations and the applications built on it.
ABOVE_CORE = ("tying.hf", "tying.hf_trainer", "tying.quant", "tying.export", "tying.cli", "tying.training", "tying.tasks", "tying.recipes")


def _tree(module: str) -> ast.Module:
    return ast.parse((SRC / module).read_text(encoding="utf-8"), filename=module)


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports by name, at any depth (``from a import b`` counts ``a`` and
    ``a.b``). tying imports absolutely: a relative import fails here."""
    found: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}:{node.lineno}: a relative import; import tying's modules by their full name"
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's end, its docstring not counted (documentation is not length)."""
    lines = node.end_lineno - node.lineno + 1 if node.end_lineno else 0
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= (first.end_lineno or first.lineno) - first.lineno + 1
    return lines


def test_the_lists_name_existing_modules() -> None:
    assert [m for m in CORE + SIZED if not (SRC / m).is_file()] == []


@pytest.mark.parametrize("module", SIZED)
def test_module_size(module: str) -> None:
    lines = len((SRC / module).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines (at most {MAX_MODULE_LINES}): split it by concept"


@pytest.mark.parametrize("module", SIZED)
def test_function_size(module: str) -> None:
    long = [
        f"{node.name} ({n} lines)"
        for node in ast.walk(_tree(module))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (n := _function_lines(node)) > MAX_FUNCTION_LINES
    ]
    assert long == [], f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_nothing_above_it(module: str) -> None:
    above = sorted(name for name in _imports(module) if any(name == a or name.startswith(f"{a}.") for a in ABOVE_CORE))
    assert above == [], f"{module} imports {above}: the core must not depend on its integrations or applications"


def test_discovery_does_not_import_sharing() -> None:
    assert not any(name.startswith("tying.sharing") for name in _imports("discovery.py"))


@pytest.mark.parametrize("module", sorted(set(CORE + SIZED)))
def test_no_underscore_name_is_imported_across_modules(module: str) -> None:
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(_tree(module))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tying")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.endswith("__")  # dunders (__version__) are public
    ]
    assert private == [], f"{module} imports private names {private}; make them internal helpers (no underscore, not in __all__)"


@pytest.mark.parametrize("module", [m for m in SIZED if m != "__init__.py" and m not in INTEGRATIONS])
def test_module_all_lists_public_names_only(module: str) -> None:
    name = "tying." + module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    exported = set(getattr(importlib.import_module(name), "__all__", ()))
    internal = sorted(exported - set(tying.__all__) - PUBLIC_ELSEWHERE)
    assert internal == [], f"{name}.__all__ lists {internal}, which tying does not export: internal helpers stay out of __all__"
