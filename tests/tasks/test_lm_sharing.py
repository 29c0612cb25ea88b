"""Cross-layer sharing from LM recipes: the model table's share keys are validated with errors
naming file, key, value and rule; every grid recipe loads; two sharing recipes compare end to end
on the built-in corpus, with the layer sets in the report and the sharing figure written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tying
from tying.recipes import RecipeError, builtin_recipes, expand_seeds, load_recipe, read_metrics, run_recipes
from tying.recipes.report import write_report

GRID = {  # recipe -> (N, M, strategy or None for unshared)
    "ptb-share-n6-m1-all": (6, 1, "all"),
    "ptb-share-n6-m2-sequence": (6, 2, "sequence"),
    "ptb-share-n6-m2-cycle": (6, 2, "cycle"),
    "ptb-share-n6-m2-cycle-rev": (6, 2, "cycle_rev"),
    "ptb-share-n6-m3-sequence": (6, 3, "sequence"),
    "ptb-share-n6-m3-cycle": (6, 3, "cycle"),
    "ptb-share-n6-m3-cycle-rev": (6, 3, "cycle_rev"),
    "ptb-share-n6-m6": (6, None, None),
    "ptb-share-n12-m6-sequence": (12, 6, "sequence"),
    "ptb-share-n12-m6-cycle-rev": (12, 6, "cycle_rev"),
}
TINY = ["data.corpus=builtin", "train.epochs=1", "train.max_batches=2", "train.batch_size=4", "train.bptt=8", "model.context_size=8", "model.embedding_size=16"]


def test_grid_recipes_all_load_with_the_same_width_and_the_named_sharing() -> None:
    assert {n for n in builtin_recipes() if n.startswith("ptb-share-")} == set(GRID)
    for name, (layers, unique, strategy) in GRID.items():
        recipe = load_recipe(name)
        model = recipe.tables["model"]
        assert (model.num_layers, model.share_unique) == (layers, unique), name
        assert (model.embedding_size, model.num_heads, model.tie, recipe.train.epochs) == (128, 4, True, 2), name
        assert recipe.tables["data"].corpus == "ptb"
        if strategy is not None:
            assert model.share_strategy == strategy
            assert len(set(tying.layer_assignment(layers, unique, strategy))) == unique


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.share_unique=4"], r"model\.share_unique = 4 with model\.num_layers = 6 and model\.share_strategy = 'cycle_rev': strategy 'cycle_rev' needs unique to divide"),
        (["model.share_unique=7", "model.share_strategy='cycle'"], r"model\.share_unique = 7 with model\.num_layers = 6 .*there cannot be more sets than layers"),
        (["model.share_unique=2", "model.share_strategy='all'"], r"strategy 'all' shares one set across every layer; got unique=2"),
        (["model.share_strategy='zigzag'"], r"model\.share_strategy = 'zigzag': Input should be 'sequence', 'cycle', 'cycle_rev' or 'all'"),
        (["model.share_unique=0"], r"model\.share_unique = 0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_share_settings_name_file_key_value_and_rule(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message) as error:
        load_recipe("ptb-share-n6-m6", overrides)
    assert "ptb-share-n6-m6.toml with override" in str(error.value)


def test_bad_share_settings_in_a_file_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "ptb-share-n6-m6"\nname = "bad"\n[model]\nshare_unique = 4\nshare_strategy = "sequence"\n')
    with pytest.raises(RecipeError, match=rf"{bad}: model\.share_unique = 4 .*choose unique in \{{1, 2, 3, 6\}}"):
        load_recipe(bad)


@pytest.mark.slow
def test_two_sharing_recipes_compare_end_to_end_on_builtin_data(tmp_path: Path) -> None:
    names = ["ptb-share-n6-m3-cycle-rev", "ptb-share-n6-m6"]
    runs = expand_seeds([load_recipe(n, TINY) for n in names])
    run_recipes(runs, tmp_path)
    shared, unshared = (read_metrics(tmp_path / n) for n in names)
    assert shared is not None and unshared is not None
    assert shared["layer_sharing"] == [
        {"path": "blocks", "assignment": [0, 1, 2, 2, 1, 0], "unique": 3, "strategy": "cycle_rev", "share_norms": True,
         "sets": "A B C C B A", "text": "blocks: 6 layers over 3 sets (cycle_rev): A B C C B A"}
    ]
    assert unshared["layer_sharing"] == []
    block = 12 * 16 * 16 + 13 * 16  # qkv, proj, fc, proj weights and biases, two layer norms (d = 16)
    assert unshared["unique_parameters"] - shared["unique_parameters"] == 3 * block
    assert shared["total_parameters"] == unshared["total_parameters"]
    rows, files = write_report(runs, tmp_path, "sharing", report="grid")
    assert [f.name for f in files] == ["grid.md", "grid.csv", "grid-valid-ppl.png", "grid-test-vs-params.png", "grid-sharing.png"]
    table = (tmp_path / "grid.md").read_text()
    assert "| run | parameters | unique parameters | layer sets | epochs |" in table
    assert "| A B C C B A |" in table and "| unshared |" in table
    assert "![test perplexity against unique parameters, by sharing strategy](grid-sharing.png)" in table
    assert json.loads(json.dumps(shared)) == shared
