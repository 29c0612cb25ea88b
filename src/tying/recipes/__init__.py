"""Recipes: training scripts and their configuration files, composed from the reusable components
(:mod:`tying.models`, :mod:`tying.training`, :mod:`tying.data`).

* :mod:`tying.recipes.config`: TOML recipe files (``tying/recipes/configs/*.toml``), inheritance,
  ``key=value`` overrides.
* :mod:`tying.recipes.lm`: train a language-model recipe into a folder, with ``metrics.json``.
* :mod:`tying.recipes.compare`: run several recipes and report them side by side.
"""

from tying.recipes.config import Recipe, RecipeError, builtin_recipes, load_recipe, parse_override
from tying.recipes.lm import METRICS_FILE, read_metrics, resolve_corpus, train_lm

__all__ = [
    "Recipe",
    "RecipeError",
    "builtin_recipes",
    "load_recipe",
    "parse_override",
    "METRICS_FILE",
    "read_metrics",
    "resolve_corpus",
    "train_lm",
]
