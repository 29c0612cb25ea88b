"""Recipe files: every built-in recipe loads, inheritance, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tying.models import LSTMLanguageModel
from tying.recipes import RecipeError, builtin_recipes, load_recipe, parse_override


def test_every_builtin_recipe_loads_and_builds_its_model() -> None:
    names = builtin_recipes()
    assert {"ptb-small-untied", "ptb-small-tied", "ptb-small-pr", "ptb-small-tied-pr", "ptb-small-real"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.corpus in ("ptb", "wikitext-2")
        LSTMLanguageModel(recipe.model_config(vocab_size=50))


def test_variants_inherit_the_base_schedule_and_change_one_thing() -> None:
    base, tied, tied_pr = (load_recipe(n) for n in ("ptb-small-untied", "ptb-small-tied", "ptb-small-tied-pr"))
    assert tied.train == base.train == tied_pr.train
    assert (base.train.epochs, base.train.lr, base.train.bptt, base.train.lr_decay, base.train.decay_start) == (13, 20.0, 20, 2.0, 4)
    assert {k: v for k, v in tied.model.items() if base.model.get(k) != v} == {"tie": True}
    assert tied_pr.model["projection"] and tied_pr.loss.projection_penalty == 1 / 5200
    assert (base.paper["test_ppl"], tied.paper["test_ppl"], tied_pr.paper["test_ppl"]) == (114.5, 112.4, 100.9)
    assert load_recipe("wikitext-2-small-tied").paper == {}  # reference numbers are never inherited


def test_overrides_are_typed_and_recorded() -> None:
    recipe = load_recipe("ptb-small-tied", ["train.epochs=2", "model.dropout=0.25", "corpus=builtin", "loss.kind=\"real\""])
    assert recipe.train.epochs == 2 and recipe.model["dropout"] == 0.25 and recipe.corpus == "builtin"
    assert recipe.loss.kind == "real"
    assert recipe.overrides == ("train.epochs=2", "model.dropout=0.25", "corpus=builtin", 'loss.kind="real"')
    assert recipe.to_dict()["overrides"] == list(recipe.overrides)


@given(st.integers(-10**9, 10**9) | st.booleans() | st.floats(allow_nan=False, allow_infinity=False))
def test_parse_override_reads_toml_values(value) -> None:
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    assert parse_override(f"train.x={text}") == (["train", "x"], value)


def test_recipe_file_with_base_by_path(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('base = "ptb-small-tied"\nname = "mine"\n[train]\nepochs = 3\n')
    (tmp_path / "child.toml").write_text('base = "mine.toml"\nname = "child"\n[model]\nhidden_size = 200\n')
    recipe = load_recipe(tmp_path / "child.toml")
    assert (recipe.name, recipe.train.epochs, recipe.model["tie"]) == ("child", 3, True)
    assert recipe.source == str(tmp_path / "child.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\ncorpus = "ptb"\n[model]\nhiden_size = 3\n', r"unknown key\(s\) \['model\.hiden_size'\]; known: \["),
        ('name = "x"\ncorpus = "ptb"\nepochs = 3\n', r"unknown top-level key\(s\) \['epochs'\]"),
        ('name = "x"\ncorpus = "ptb"\n[train]\nlr_schedule = "cosine"\n', r"lr_schedule must be 'plateau' or 'step', got 'cosine'"),
        ('name = "x"\n', r"'corpus' \(a string\) is required"),
        ('name = "x\n', r"is not valid TOML"),
        ('base = "nope"\nname = "x"\ncorpus = "ptb"\n', r"no recipe 'nope': not a \.toml file and not a built-in recipe \(built-in: ptb-medium-tied"),
        ('base = "bad.toml"\nname = "x"\ncorpus = "ptb"\n', r"'base' chain loops"),
    ],
)
def test_bad_recipes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_bad_overrides_are_clear_errors() -> None:
    with pytest.raises(RecipeError, match=r"override 'epochs' is not KEY=VALUE \(e\.g\. train\.epochs=2\)"):
        load_recipe("ptb-small-tied", ["epochs"])
    with pytest.raises(RecipeError, match=r"unknown key\(s\) \['train\.epoch'\]"):
        load_recipe("ptb-small-tied", ["train.epoch=2"])
    with pytest.raises(RecipeError, match=r"override 'corpus\.x=1': 'corpus' is not a table"):
        load_recipe("ptb-small-tied", ["corpus.x=1"])
