"""Recipe configuration files: TOML, with single inheritance and ``key=value`` overrides.

A recipe file names its task and gives that task's tables::

    base = "ptb-small"            # optional: start from another recipe, then override
    name = "ptb-small-tied"
    description = "..."
    task = "lm"                   # a task name, or "package.module:ClassName" (find_task)

    [data]                        # the task's tables, each validated by its pydantic model:
    corpus = "ptb"                #   types are strict (tie = "False" is an error, not True),
    [model]                       #   ranges checked, unknown keys refused
    tie = true
    [train]                       # TrainConfig (or the task's subclass): epochs, lr, schedule ...
    epochs = 13
    [paper]                       # optional reference numbers: test_<metric>, parameters, source, note,
                                  # tolerance (a gap to test_<metric> the report counts as matching),
                                  # tested: "best" (default) or "last", the epoch whose model the
                                  # paper's test numbers score (code that tests once after training: last)

Tables merge key by key down the ``base`` chain, except ``[paper]``: reference numbers belong to
the file that states them and are never inherited. Every error names the file (and the
override, if the value came from one), the key, the value and what is allowed. The recipes
shipped with tying live in ``tying/recipes/configs/`` and are named without ``.toml``
(``tying list`` prints them).

``train.epochs`` as the files give it (before overrides) is the recipe's schedule: a run with
fewer epochs (``--set train.epochs=2``) is reported as a shortened schedule.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tying.errors import RecipeError
from tying.tasks import BUILTIN_TASKS
from tying.training.config import TrainConfig
from tying.training.registry import get_task
from tying.training.task import Task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Recipe", "RecipeError", "load_recipe", "builtin_recipes", "parse_override", "find_task"]

_TOP = {"base", "name", "description", "task", "paper"}
_PAPER_KEYS = {"parameters", "source", "note", "tolerance", "tested"}


def find_task(name: str, missing: Callable[[str], Exception] = RecipeError) -> type[Task]:
    """The task class a recipe's ``task = name`` names (:func:`tying.training.get_task`: a
    ``"module:Class"`` path, a registered task, a ``tying.tasks`` entry point, or one of tying's
    own, :data:`tying.tasks.BUILTIN_TASKS`); else ``missing(why)``."""
    return get_task(name, missing, builtin=BUILTIN_TASKS)


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe: every table merged down its ``base`` chain, overrides applied, validated.

    Attributes:
        name, description: see the module docstring.
        task: the task name; tables: its validated tables (``tables["train"]`` is a TrainConfig).
        paper: reference numbers to compare with (may be empty).
        schedule_epochs: ``train.epochs`` of the files, before overrides.
        source: the file the recipe was read from; overrides: the ``key=value`` strings applied.
    """

    name: str
    description: str
    task: str
    tables: dict[str, BaseModel]
    paper: dict[str, Any] = field(default_factory=dict)
    schedule_epochs: int = 0
    source: str = ""
    overrides: tuple[str, ...] = ()

    @property
    def train(self) -> TrainConfig:
        train = self.tables["train"]
        assert isinstance(train, TrainConfig)
        return train

    @property
    def shortened(self) -> bool:
        """Trained for fewer epochs than the recipe's own schedule."""
        return self.train.epochs < self.schedule_epochs

    def make_task(self) -> Task:
        return find_task(self.task)(self.tables)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> Recipe:
        """The same recipe file with more overrides applied after this one's."""
        return load_recipe(self.source, [*self.overrides, *overrides])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "task": self.task,
            **{name: table.model_dump(mode="json") for name, table in self.tables.items()},
            "paper": dict(self.paper),
            "schedule_epochs": self.schedule_epochs,
            "source": self.source,
            "overrides": list(self.overrides),
        }


def _configs_dir() -> Path:
    return Path(str(resources.files("tying.recipes") / "configs"))


def builtin_recipes() -> dict[str, Path]:
    """Name -> file of every recipe shipped with tying, sorted by name."""
    return {p.stem: p for p in sorted(_configs_dir().glob("*.toml"))}


def _locate(ref: str, relative_to: Path | None) -> Path:
    path = Path(ref)
    candidates = [path] if path.suffix == ".toml" else []
    if relative_to is not None and path.suffix == ".toml":
        candidates.insert(0, relative_to.parent / path)
    candidates.append(_configs_dir() / f"{ref}.toml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = ", ".join(builtin_recipes())
    raise RecipeError(f"no recipe {ref!r}: not a .toml file and not a built-in recipe (built-in: {known})")


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in seen:
        raise RecipeError(f"recipe {str(path)!r}: 'base' chain loops ({' -> '.join(str(p) for p in (*seen, path))})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe {str(path)!r} is not valid TOML: {exc}") from exc
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(f"{path}: base = {base!r} must be a recipe name or .toml path (a string)")
    merged = _read(_locate(base, path), (*seen, path.resolve()))
    merged.pop("paper", None)
    for key, value in data.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=2"`` -> ``(["train", "epochs"], 2)``. The value is read as a TOML value
    (numbers, lowercase booleans, quoted strings, arrays); anything else is taken as a bare string
    (``corpus=ptb``), which strict validation then refuses where a number or boolean is needed."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {text!r} is not KEY=VALUE (e.g. train.epochs=2)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


#: What a value of each pydantic error type must be instead (the error message adds the range).
_ALLOWED = {
    "bool_type": "true or false (a TOML boolean: lowercase, unquoted)",
    "int_type": "a whole number (e.g. 2)",
    "float_type": "a number (e.g. 0.5)",
    "string_type": "a quoted string",
    "tuple_type": "an array such as [0.9, 0.999]",
}


def _describe(error: Any, table: str, known: list[str]) -> str:
    """One clause for a pydantic error (``ErrorDetails``) of table ``table``."""
    key = ".".join([table, *map(str, error["loc"])]) if error["loc"] else table
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r} (known: {', '.join(known)})"
    if error["type"] == "missing":
        return f"{key} is required"
    allowed = _ALLOWED.get(error["type"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{key} = {error['input']!r}: {message}" + (f"; allowed: {allowed}" if allowed else "")


def _validate(data: dict[str, Any], where: str) -> tuple[type[Task], dict[str, BaseModel]]:
    for key in ("name", "task"):
        if not isinstance(data.get(key), str):
            raise RecipeError(f"{where}: {key!r} (a string) is required" + (f", got {data[key]!r}" if key in data else ""))
    task = find_task(data["task"], missing=lambda msg: RecipeError(f"{where}: task = {data['task']!r}: {msg}"))
    raw = {k: v for k, v in data.items() if k not in _TOP}
    types = task.table_types(raw)
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise RecipeError(f"{where}: unknown top-level key(s) {unknown}; known: {sorted(_TOP | set(types))}")
    tables, problems = {}, []
    for name, cls in types.items():
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: [{name}] must be a table, got {value!r}")
        try:
            tables[name] = cls(**value)
        except ValidationError as exc:
            problems += [_describe(e, name, sorted(cls.model_fields)) for e in exc.errors()]
    paper = data.get("paper", {})
    bad = sorted(k for k in paper if k not in _PAPER_KEYS and not (k.startswith("test_") or k.startswith("valid_")))
    if bad:
        problems.append(f"unknown key(s) {[f'paper.{k}' for k in bad]}; known: test_<metric>, valid_<metric>, {', '.join(sorted(_PAPER_KEYS))}")
    tolerance = paper.get("tolerance")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance <= 0):
        problems.append(f"paper.tolerance must be a positive number (a gap to test_<metric> that counts as matching), got {tolerance!r}")
    if paper.get("tested", "best") not in ("best", "last"):
        problems.append(f"paper.tested must be \"best\" or \"last\" (the epoch whose model the paper's test numbers score), got {paper['tested']!r}")
    if problems:
        raise RecipeError(f"{where}: " + "; ".join(problems))
    try:
        task(tables)  # checks that span tables
    except ValueError as exc:
        raise RecipeError(f"{where}: {exc}") from exc
    return task, tables


def load_recipe(ref: str | os.PathLike[str], overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read a recipe by built-in name or path, apply ``overrides`` (``"table.key=value"``) and
    validate every setting (errors name the file, override, key, value and what is allowed)."""
    path = _locate(str(ref), None)
    data = _read(path)
    _validate(data, str(path))  # the files alone must be valid, so an error names where it is
    schedule = data.get("train", {}).get("epochs", TrainConfig.model_fields["epochs"].default)
    for text in overrides:
        keys, value = parse_override(text)
        target = data
        for k in keys[:-1]:
            target = target.setdefault(k, {})
            if not isinstance(target, dict):
                raise RecipeError(f"override {text!r}: {k!r} is not a table")
        target[keys[-1]] = value
        _validate(data, f"{path} with override {text!r}")
    _, tables = _validate(data, str(path))
    return Recipe(
        name=data["name"],
        description=data.get("description", ""),
        task=data["task"],
        tables=tables,
        paper=dict(data.get("paper", {})),
        schedule_epochs=schedule,
        source=str(path),
        overrides=tuple(overrides),
    )
