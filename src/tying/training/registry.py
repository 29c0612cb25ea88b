"""Finding the task class a recipe names (``task = "..."``), wherever it is written.

A name resolves, in this order, to

1. ``"package.module:ClassName"``: that class, imported on demand (a task written outside tying:
   its folder on the Python path, or its package installed);
2. a class registered in this process with :func:`register_task` (a task defined in a script or
   notebook);
3. an entry point of the group ``tying.tasks`` (:data:`ENTRY_POINT_GROUP`): name = the task
   name, value = ``"module:Class"``. Installed packages declare their tasks this way, and so does
   tying for its own (``pyproject.toml``); ``builtin`` adds declarations of the same form, for a
   source checkout whose installed metadata predates them (the recipe layer passes
   :data:`tying.tasks.BUILTIN_TASKS`). One name declared with two different classes is an error.

Whatever the route, the class must be a :class:`~tying.training.task.Task` subclass with
``name``, ``tables`` (``"train"``: :class:`~tying.training.config.TrainConfig` or a subclass) and
``metrics``; otherwise the error names what is wrong.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TypeVar

from tying.training.config import TrainConfig
from tying.training.task import Task

__all__ = ["ENTRY_POINT_GROUP", "NotATaskError", "register_task", "get_task", "task_names", "load_task_class"]

#: The entry-point group through which packages declare tasks.
ENTRY_POINT_GROUP = "tying.tasks"

_TASKS: dict[str, type[Task]] = {}

T = TypeVar("T", bound=type[Task])


class NotATaskError(TypeError):
    """What a task name resolves to is not a complete task class; the message says why."""


def _check(obj: object, where: str) -> type[Task]:
    """``obj`` if it is a complete task class, else TypeError naming ``where`` it came from."""
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        kind = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise NotATaskError(f"{where} is {kind}, not a task (a subclass of tying.training.Task)")
    for attr in ("name", "tables", "metrics"):
        if not hasattr(obj, attr):
            raise NotATaskError(f"task class {obj.__name__} ({where}) must set the class attribute {attr!r}")
    if not issubclass(obj.tables.get("train", object), TrainConfig):
        raise NotATaskError(f"task {obj.name!r} ({where}): tables['train'] must be TrainConfig or a subclass")
    return obj


def register_task(cls: T) -> T:
    """Class decorator: make ``cls`` available to recipes as ``task = cls.name`` in this process."""
    _TASKS[_check(cls, f"class {cls.__name__}").name] = cls
    return cls


def load_task_class(spec: str) -> type[Task]:
    """The task class of ``"package.module:ClassName"`` (``ClassName`` may be dotted).

    Raises:
        LookupError: the module cannot be imported or has no such attribute.
        NotATaskError: the attribute is not a complete task class.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LookupError(f"{spec!r} is not 'module:Class' (e.g. 'my_task:MyTask')")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(
            f"cannot import module {module_name!r} ({exc}); put the folder holding it on the Python path "
            "(PYTHONPATH) or install its package"
        ) from exc
    try:
        obj = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise LookupError(f"module {module_name!r} ({getattr(module, '__file__', None) or 'built-in'}) has no attribute {attr!r}") from None
    return _check(obj, repr(spec))


def _declared(builtin: Mapping[str, str]) -> dict[str, set[str]]:
    """Task name -> the ``"module:Class"`` values declaring it (entry points, then ``builtin``)."""
    found: dict[str, set[str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, set()).add(ep.value.replace(" ", ""))
    for name, value in builtin.items():
        found.setdefault(name, set()).add(value)
    return found


def task_names(builtin: Mapping[str, str] | None = None) -> list[str]:
    """Every task name a recipe can give: declared (entry points, ``builtin``) and registered."""
    return sorted({*_declared(builtin or {}), *_TASKS})


def get_task(name: str, missing: Callable[[str], Exception] = KeyError, builtin: Mapping[str, str] | None = None) -> type[Task]:
    """The task class ``name`` resolves to (module docstring); else ``missing(message)`` is raised,
    the message saying why (no such task, an import that failed, not a task class)."""
    try:
        if ":" in name:
            return load_task_class(name)
        if name in _TASKS:
            return _TASKS[name]
        values = _declared(builtin or {}).get(name)
        if not values:
            raise LookupError(f"no task {name!r}; known tasks: {', '.join(task_names(builtin))}")
        if len(values) > 1:
            raise LookupError(f"task {name!r} is declared as more than one class ({', '.join(sorted(values))}); uninstall one of them")
        (value,) = values
        return load_task_class(value)  # looked up afresh each time (a few ms): a package installed meanwhile counts
    except (LookupError, NotATaskError) as exc:
        raise missing(exc.args[0] if exc.args else str(exc)) from exc
