"""Recipes: experiments as configuration files, run by the training engine.

* :mod:`tying.recipes.config`: TOML recipe files (``tying/recipes/configs/*.toml``) naming a
  task and its tables, inheritance, ``key=value`` overrides, strict validation.
* :mod:`tying.recipes.run`: train a recipe into a folder with ``metrics.json``; several recipes,
  seeds and parallel jobs, resumably.
* :mod:`tying.recipes.report`: tables, CSV and plots of finished runs; sections of ``docs/RESULTS.md``.
"""

from tying.recipes.config import Recipe, RecipeError, builtin_recipes, find_task, load_recipe, parse_override
from tying.recipes.run import METRICS_FILE, RecordError, Run, expand_seeds, read_metrics, run_recipes, train_recipe

__all__ = [
    "Recipe",
    "RecipeError",
    "builtin_recipes",
    "find_task",
    "load_recipe",
    "parse_override",
    "METRICS_FILE",
    "RecordError",
    "Run",
    "expand_seeds",
    "read_metrics",
    "run_recipes",
    "train_recipe",
]
