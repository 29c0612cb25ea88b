"""Run recipes: one into a folder (:func:`train_recipe`), several side by side, resumably, under
one or more seeds (:func:`run_recipes`). ``tying train``, ``tying compare`` and ``tying demo``
all go through here.

A run writes into its folder the trainer's checkpoints (so an interrupted run continues) and,
when it finishes, ``metrics.json``: the resolved recipe, data facts, parameter counts, per-epoch
history, the validation and test metrics of the best epoch, throughput, which layers share
parameter sets (:func:`tying.layer_sharing`), the task's extras (:meth:`Task.record_extras`), the command that
reproduces it and the machine. It is written last and atomically, so its presence means the run
is complete; reports are built from these records alone (:mod:`tying.recipes.report`).

Record format 2 (this version) has ``"format": 2``, ``"task"``, ``"valid"``/``"test"`` metric
dicts and ``"<unit>_per_s"``. Records without ``"format"`` (language-model runs of tying 0.1,
such as the committed ``results/lm``) are read as format 2 by :func:`upgrade_record`: the
numbers are the same, renamed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import tying
from tying._io import atomic_write_text
from tying.machine import describe_code, describe_machine
from tying._text import plural
from tying.recipes.config import Recipe, RecipeError, builtin_recipes, load_recipe
from tying.training.settings import changed_settings
from tying.training.state import read_train_state
from tying.training.trainer import STATE_FILE, Interrupted, Trainer

__all__ = [
    "METRICS_FILE",
    "FORMAT",
    "RecordError",
    "RunFailedError",
    "Run",
    "train_recipe",
    "init_distributed",
    "read_metrics",
    "upgrade_record",
    "train_command",
    "expand_seeds",
    "changed_runs",
    "run_recipes",
    "current_command",
]

METRICS_FILE = "metrics.json"
FORMAT = 2


class RecordError(ValueError):
    """A ``metrics.json`` that cannot be read; the message names the file."""


class RunFailedError(RuntimeError):
    """A run of :func:`run_recipes` in a subprocess failed; the message names it and its log."""


@dataclass(frozen=True)
class Run:
    """One run of a comparison: its folder name under the output folder, the recipe name it
    reports under (seeds of one recipe share it), and the recipe."""

    name: str
    group: str
    recipe: Recipe


def train_recipe(
    recipe: Recipe,
    out: str | os.PathLike[str],
    *,
    data: Any = None,
    data_root: str | os.PathLike[str] | None = None,
    resume: bool = True,
    command: str = "",
    console: Console | None = None,
    name: str | None = None,
    progress_every: float = 30.0,
) -> dict[str, Any]:
    """Train ``recipe`` into folder ``out`` and return (and write) its record.

    The data is loaded and the model built before anything is written, so a recipe whose data
    is missing leaves no folder behind.

    Args:
        data: already loaded data of the recipe's task (else ``task.load_data(data_root)``).
        resume: continue from a checkpoint in ``out`` if there is one.
        command: the command line that reproduces the run, stored in the record.
        console: progress and epoch lines go here (None: silent).
        name: the run's name in the record (default: the recipe's).
        progress_every: seconds between progress lines when the console is not a terminal.
    """
    out = Path(out)
    rank = init_distributed()
    task = recipe.make_task()
    if data is None:
        data = task.load_data(data_root)
    code = describe_code()  # before training: the code this process runs, whatever changes meanwhile
    torch.manual_seed(recipe.train.seed)  # the same initial weights for every variant of a recipe family
    model = task.build_model(data)
    counts = tying.summary(model)
    if console is not None and rank == 0:
        console.rule(f"{name or recipe.name}: {plural(counts.unique_parameters, 'unique parameter')}")
    started = time.time()
    result = Trainer(task, model, data, out, console=console, progress_every=progress_every).fit(resume=resume)
    record = {
        "format": FORMAT,
        "name": name or recipe.name,
        "task": recipe.task,
        "recipe": recipe.to_dict(),
        "data": task.data_summary(data),
        "total_parameters": counts.total_parameters,
        "unique_parameters": counts.unique_parameters,
        "layer_sharing": [sharing.to_dict() for sharing in tying.layer_sharing(model)],
        **result.to_dict(),
        "extras": task.record_extras(model, data),
        "command": command,
        "machine": describe_machine(),
        "code": code,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()),
        "session_s": time.time() - started,
    }
    if rank == 0:
        atomic_write_text(out / METRICS_FILE, json.dumps(record, indent=2) + "\n")
    return record


def init_distributed() -> int:
    """This process's rank: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the
    default process group is started first (gloo on CPU, NCCL with CUDA), once."""
    dist = torch.distributed
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank() if dist.is_initialized() else 0


def read_metrics(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of a finished run in ``folder`` (format 2), or None if it has not finished."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{str(path)!r} is not a valid metrics record ({exc}); delete it to train the run again") from exc
    if not isinstance(record, dict) or "name" not in record or "history" not in record:
        raise RecordError(f"{str(path)!r} is not a tying metrics record (no 'name' and 'history'); delete it to train the run again")
    try:
        return upgrade_record(record)
    except (KeyError, TypeError, IndexError) as exc:
        raise RecordError(f"{str(path)!r}: incomplete metrics record (missing {exc}); delete it to train the run again") from exc


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record in format 2. Format 1 (no ``"format"`` key: tying 0.1's language-model runs)
    is converted, numbers unchanged: ``corpus`` becomes ``data`` (and the recipe's ``data.corpus``;
    ``train.max_batches = null``, no cap, becomes 0),
    ``best_valid_ppl``/``test_ppl``/``test_loss`` become the ``valid``/``test`` dicts, and the
    recipe's schedule is its built-in file's ``train.epochs`` where an override changed it."""
    if record.get("format") == FORMAT:
        return record
    if "format" in record:
        raise KeyError(f"'format' {record['format']!r} (this tying reads {FORMAT})")
    r = dict(record)
    recipe = dict(r["recipe"])
    recipe["data"] = {"corpus": recipe.pop("corpus")}
    recipe["task"] = "lm"
    if recipe["train"].get("max_batches", 0) is None:  # 0.1's "no cap" is today's 0
        recipe["train"] = {**recipe["train"], "max_batches": 0}
    epochs = recipe["train"]["epochs"]
    if any(o.startswith("train.epochs=") for o in recipe.get("overrides", [])):
        builtin = builtin_recipes().get(Path(recipe["source"]).stem)
        if builtin is not None:
            epochs = load_recipe(builtin).schedule_epochs
    recipe["schedule_epochs"] = epochs
    best = r["history"][r["best_epoch"] - 1]
    test_ppl, test_loss = r.pop("test_ppl"), r.pop("test_loss")
    r.update(
        format=FORMAT,
        task="lm",
        recipe=recipe,
        data=r.pop("corpus"),
        unit="tokens",
        valid={"ppl": r.pop("best_valid_ppl"), "loss": best["valid_loss"]},
        test=None if test_ppl is None else {"ppl": test_ppl, "loss": test_loss},
    )
    return r


# --------------------------------------------------------------------------- several runs


def train_command(run: Run, out: Path, data_root: str | os.PathLike[str] | None = None) -> list[str]:
    """The ``tying train`` words that run ``run`` into ``out`` (how a run is launched in a
    subprocess, and the command its record shows)."""
    words = ["tying", "train", _recipe_ref(run.recipe), *(w for o in run.recipe.overrides for w in ("--set", o)), "--out", str(out)]
    if run.name != run.recipe.name:  # another seed's run: its record carries the run's name
        words += ["--name", run.name]
    if data_root is not None:
        words += ["--data-root", str(data_root)]
    return words


#: Options of ``tying train`` that take a value (the rest are flags), for :func:`current_command`.
_VALUED = {"--config", "-c", "--set", "--out", "--name", "--data-root", "--threads", "--progress-every"}


def current_command(command: str) -> str:
    """A recorded ``tying train`` command in today's spelling: records written before tying 0.2
    name the recipe with ``--config NAME`` and give overrides as bare ``KEY=VALUE`` words, which
    become ``NAME`` and ``--set KEY=VALUE``. Other commands are returned unchanged."""
    words = shlex.split(command)
    start = 3 if words[:3] == ["tying", "lm", "train"] else 2
    if words[start - 1 : start] != ["train"] or words[0] != "tying" or not {"--config", "-c"} & set(words):
        return command
    recipe, sets, rest = [], [], []
    i = start
    while i < len(words):
        word = words[i]
        if word in ("--config", "-c"):
            recipe.append(words[i + 1])
        elif word in _VALUED:
            rest += words[i : i + 2]
        elif word.startswith("-"):  # a flag
            rest.append(word)
        else:
            sets += ["--set", word]
        i += 2 if word in _VALUED else 1
    return shlex.join([*words[:start], *recipe, *sets, *rest])


def _recipe_ref(recipe: Recipe) -> str:
    """A built-in recipe by name, any other by its path."""
    source = Path(recipe.source)
    builtin = builtin_recipes().get(source.stem)
    return source.stem if builtin is not None and builtin.resolve() == source.resolve() else recipe.source


def expand_seeds(recipes: Sequence[Recipe], seeds: int = 1) -> list[Run]:
    """Each recipe under ``seeds`` seeds: its own ``train.seed`` (run named as the recipe, so a
    single-seed comparison's runs count as the first seed) and the next ``seeds - 1`` integers
    (runs ``<name>-seed<S>``, with the override ``train.seed=S``). Seed by seed: every recipe's
    first seed comes before any second seed, so a grid cut short has a row for every recipe."""
    runs = [Run(recipe.name, recipe.name, recipe) for recipe in recipes]
    for offset in range(1, seeds):
        for recipe in recipes:
            seed = recipe.train.seed + offset
            runs.append(Run(f"{recipe.name}-seed{seed}", recipe.name, recipe.with_overrides([f"train.seed={seed}"])))
    return runs


def _stored_settings(folder: Path) -> dict[str, Any] | None:
    """The tables a run in ``folder`` was trained with: its record's when it finished, else its
    training state's (an interrupted run); None when nothing was trained there."""
    record = read_metrics(folder)
    if record is not None:
        if not isinstance(record.get("recipe"), dict):
            raise RecordError(f"{str(folder / METRICS_FILE)!r}: incomplete metrics record (no 'recipe'); delete it to train the run again")
        return dict(record["recipe"])
    state = folder / STATE_FILE
    return read_train_state(state).config if state.is_file() else None


def changed_runs(runs: Sequence[Run], out: str | os.PathLike[str]) -> list[str]:
    """The runs among ``runs`` stored in ``out/<run name>`` with other settings than their
    recipes ask for, each as ``"<name> (train.lr: stored 0.01, requested 0.001)"``: the check
    ``tying train`` makes before resuming (:func:`tying.training.settings.changed_settings`)."""
    changed = []
    for run in runs:
        stored = _stored_settings(Path(out) / run.name)
        differences = [] if stored is None else changed_settings(stored, run.recipe.tables)
        if differences:
            changed.append(f"{run.name} ({'; '.join(differences)})")
    return changed


def _pending(run: Run, out: Path) -> bool:
    """Not finished, or finished with fewer epochs than asked (resuming extends it)."""
    record = read_metrics(out / run.name)
    return record is None or len(record["history"]) < run.recipe.train.epochs


def run_recipes(
    runs: Sequence[Run],
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    data_root: str | os.PathLike[str] | None = None,
    console: Console | None = None,
) -> None:
    """Train every run that has not finished in ``out/<run name>`` (resuming from its
    checkpoints). ``jobs > 1`` trains that many at once in subprocesses, each with
    ``cpu_count // jobs`` torch threads and its output in ``out/<name>/train.log``.
    Ctrl-C (or SIGINT) lets the running runs save a resumable point and raises :class:`Interrupted`."""
    out = Path(out)
    changed = changed_runs(runs, out)
    if changed:  # reusing them would report (or resume) runs of other settings under these recipes' names
        raise RecipeError(
            f"{str(out)!r} holds {plural(len(changed), 'run')} trained with other settings than requested: {', '.join(changed)}; "
            f"use another output folder, or delete {'its folder to train it' if len(changed) == 1 else 'their folders to train them'} again"
        )
    pending = [r for r in runs if _pending(r, out)]
    if console is not None:
        done = len(runs) - len(pending)
        console.print(f"{done} of {plural(len(runs), 'run')} already finished in {str(out)!r}; {len(pending)} to train", highlight=False)
    if jobs > 1:
        _run_parallel(pending, out, jobs, data_root, console)
        return
    loaded: dict[str, Any] = {}  # runs of one data set share it
    for run in pending:
        task = run.recipe.make_task()
        key = json.dumps([run.recipe.task, {k: t.model_dump(mode="json") for k, t in run.recipe.tables.items() if k != "model"}])
        if key not in loaded:
            loaded[key] = task.load_data(data_root)
        command = shlex.join(train_command(run, out / run.name, data_root))
        train_recipe(run.recipe, out / run.name, data=loaded[key], command=command, console=console, name=run.name)


def _run_parallel(runs: Sequence[Run], out: Path, jobs: int, data_root: str | os.PathLike[str] | None, console: Console | None) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue, failed = list(runs), []
    interrupted: list[str] = []
    running: list[tuple[Run, subprocess.Popen[bytes], Any]] = []

    def say(message: str) -> None:
        if console is not None:
            console.print(message, highlight=False)

    try:
        # A run interrupted on its own (SIGINT sent to it, not to this process) stops new launches too.
        while running or (queue and not interrupted):
            while queue and len(running) < jobs and not interrupted:
                run = queue.pop(0)
                folder = out / run.name
                folder.mkdir(parents=True, exist_ok=True)
                words = train_command(run, folder, data_root)
                argv = [sys.executable, "-m", "tying.cli.main", *words[1:], "--threads", str(threads)]
                log = open(folder / "train.log", "ab")  # noqa: SIM115 (closed when the process ends)
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"})
                running.append((run, proc, log))
                say(f"started {run.name} (pid {proc.pid}, {plural(threads, 'thread')}): log {str(folder / 'train.log')!r}")
            finished = [item for item in running if item[1].poll() is not None]
            if not finished:
                time.sleep(1)
            for run, proc, log in finished:
                running.remove((run, proc, log))
                log.close()
                if proc.returncode == Interrupted.exit_status:
                    interrupted.append(run.name)
                    say(f"{run.name} interrupted (saved a resumable point); no new run starts")
                elif proc.returncode != 0:
                    failed.append(run.name)
                    say(f"{run.name} FAILED (exit {proc.returncode})")
                else:
                    say(f"{run.name} finished")
    except KeyboardInterrupt:
        # The runs got the same SIGINT (one process group): each saves a resumable point.
        for _, proc, log in running:
            proc.wait()
            log.close()
        raise Interrupted(f"interrupted; {plural(len(running), 'running run')} saved resumable points in {str(out)!r}") from None
    if interrupted:
        also = f"; {_runs(failed)} failed (see train.log in their folders)" if failed else ""
        raise Interrupted(f"{_runs(interrupted)} interrupted and saved resumable points in {str(out)!r}{also}")
    if failed:
        raise RunFailedError(f"{_runs(failed)} failed; see train.log in their folders under {str(out)!r}")


def _runs(names: list[str]) -> str:
    """``run 'a'`` or ``runs 'a', 'b'``."""
    return f"{'run' if len(names) == 1 else 'runs'} {', '.join(map(repr, names))}"
