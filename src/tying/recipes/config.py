"""Recipe configuration files: TOML, with single inheritance and ``key=value`` overrides.

A recipe file names a corpus and the settings of the model, loss and training loop::

    base = "ptb-small"            # optional: start from another recipe, then override
    name = "ptb-small-tied"
    description = "..."
    corpus = "ptb"                # a folder under the data root, a path, or "builtin"

    [model]                       # tying.models.LSTMConfig fields (vocab_size comes from the corpus)
    tie = true
    [loss]                        # tying.training.LossConfig fields
    [train]                       # tying.training.TrainConfig fields
    [paper]                       # optional reference numbers: test_ppl, valid_ppl, parameters, source

Tables merge key by key down the ``base`` chain, except ``[paper]``: reference numbers belong to
the file that states them and are never inherited. Unknown keys are errors naming the file, so a
typo never silently falls back to a default. The recipes shipped with tying live in
``tying/recipes/configs/`` and are named without ``.toml`` (``tying lm list`` prints them).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tying.models import LSTMConfig
from tying.training import LossConfig, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Recipe", "RecipeError", "load_recipe", "builtin_recipes", "parse_override"]

_TABLES = {"model": LSTMConfig, "loss": LossConfig, "train": TrainConfig}
_TOP = {"base", "name", "description", "corpus", "paper", *_TABLES}
_PAPER = {"test_ppl", "valid_ppl", "parameters", "source", "note"}


class RecipeError(ValueError):
    """A recipe file or override that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe: every table merged down its ``base`` chain, overrides applied.

    Attributes:
        name, description, corpus: see the module docstring.
        model: keyword arguments of :class:`~tying.models.LSTMConfig` (without ``vocab_size``).
        loss: a :class:`~tying.training.LossConfig`; train: a :class:`~tying.training.TrainConfig`.
        paper: reference numbers to compare with (may be empty).
        source: the file the recipe was read from; overrides: the ``key=value`` strings applied.
    """

    name: str
    description: str
    corpus: str
    model: dict[str, Any]
    loss: LossConfig
    train: TrainConfig
    paper: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    overrides: tuple[str, ...] = ()

    def model_config(self, vocab_size: int) -> LSTMConfig:
        return LSTMConfig(vocab_size=vocab_size, **self.model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "corpus": self.corpus,
            "model": dict(self.model),
            "loss": dataclasses.asdict(self.loss),
            "train": self.train.to_dict(),
            "paper": dict(self.paper),
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
    _check_keys(data, str(path))
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read(_locate(base, path), (*seen, path.resolve()))
    merged.pop("paper", None)
    for key, value in data.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def _check_keys(data: dict[str, Any], where: str) -> None:
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise RecipeError(f"{where}: unknown top-level key(s) {unknown}; known: {sorted(_TOP)}")
    for table, cls in _TABLES.items():
        value = data.get(table, {})
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: [{table}] must be a table, got {value!r}")
        fields = {f.name for f in dataclasses.fields(cls)} - {"vocab_size"}
        bad = sorted(set(value) - fields)
        if bad:
            raise RecipeError(f"{where}: unknown key(s) {[f'{table}.{k}' for k in bad]}; known: {sorted(fields)}")
    bad = sorted(set(data.get("paper", {})) - _PAPER)
    if bad:
        raise RecipeError(f"{where}: unknown key(s) {[f'paper.{k}' for k in bad]}; known: {sorted(_PAPER)}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=2"`` -> ``(["train", "epochs"], 2)``. The value is read as a TOML value
    (numbers, booleans, quoted strings, arrays); anything else is taken as a bare string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {text!r} is not KEY=VALUE (e.g. train.epochs=2)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def load_recipe(ref: str | os.PathLike[str], overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read a recipe by built-in name or path, apply ``overrides`` (``"section.key=value"``) and
    validate every setting (errors name the file and key)."""
    path = _locate(str(ref), None)
    data = _read(path)
    for text in overrides:
        keys, value = parse_override(text)
        target = data
        for k in keys[:-1]:
            target = target.setdefault(k, {})
            if not isinstance(target, dict):
                raise RecipeError(f"override {text!r}: {k!r} is not a table")
        target[keys[-1]] = value
    _check_keys(data, f"{path} with overrides {list(overrides)}" if overrides else str(path))
    for key in ("name", "corpus"):
        if not isinstance(data.get(key), str):
            raise RecipeError(f"{path}: '{key}' (a string) is required")
    try:
        loss = LossConfig(**data.get("loss", {}))
        train = TrainConfig(**data.get("train", {}))
        LSTMConfig(vocab_size=1, **data.get("model", {}))  # validates field names and types early
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    return Recipe(
        name=data["name"],
        description=data.get("description", ""),
        corpus=data["corpus"],
        model=dict(data.get("model", {})),
        loss=loss,
        train=train,
        paper=dict(data.get("paper", {})),
        source=str(path),
        overrides=tuple(overrides),
    )
