"""Recipe files: every built-in recipe loads and builds its model, inheritance, overrides, and
clear errors for bad values (file, key, value and what is allowed)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tying.models import LSTMConfig, LSTMLanguageModel, TransformerLanguageModel, TrellisLanguageModel
from tying.training.config import next_lr
from tying.recipes import RecipeError, builtin_recipes, load_recipe, parse_override
from tying.tasks.lm import LMDataset, LSTMModel


def _build(recipe, vocab: int = 50):
    task = recipe.make_task()
    return task.model_for(vocab)


def test_every_builtin_recipe_loads_and_builds_its_model() -> None:
    names = builtin_recipes()
    assert {"ptb-small-untied", "ptb-small-tied", "ptb-small-pr", "ptb-small-tied-pr", "ptb-small-real", "demo-tied"} <= set(names)
    assert {"ptb-transformer-tied", "wikitext-2-transformer-untied"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name and not recipe.shortened
        if recipe.task != "lm":
            continue  # the other tasks' recipes are built by their own tests (tests/tasks/)
        assert recipe.tables["data"].corpus in ("ptb", "wikitext-2", "builtin")
        model = _build(recipe)
        kinds = {"transformer": TransformerLanguageModel, "trellis": TrellisLanguageModel, "lstm": LSTMLanguageModel}
        assert isinstance(model, kinds[recipe.tables["model"].arch])
        transformer = recipe.tables["model"].arch == "transformer"
        tied = model.lm_head.weight is model.wte.weight if transformer else model.decoder.weight is model.encoder.weight
        table = recipe.tables["model"]
        assert tied == (table.tie_embeddings if table.arch == "trellis" else table.tie)


def test_variants_inherit_the_base_schedule_and_change_one_thing() -> None:
    base, tied, tied_pr = (load_recipe(n) for n in ("ptb-small-untied", "ptb-small-tied", "ptb-small-tied-pr"))
    assert tied.train == base.train == tied_pr.train
    t = base.train
    # Press & Wolf's code: lr * 0.5 ** max(i - 4, 0) for 0-based epoch i (five epochs at the full
    # rate), one evaluation stream.
    assert (t.epochs, t.lr, t.bptt, t.lr_decay, t.decay_start, t.eval_batch_size) == (13, 20.0, 20, 2.0, 5, 1)  # type: ignore[attr-defined]
    lrs = [20.0]
    for epoch in range(1, 13):
        lrs.append(next_lr(t, lrs[-1], epoch=epoch, improved=True))
    assert lrs == [20.0 * 0.5 ** max(i - 4, 0) for i in range(13)]
    changed = {k: v for k, v in tied.tables["model"].to_dict().items() if base.tables["model"].to_dict()[k] != v}
    assert changed == {"tie": True}
    assert tied_pr.tables["model"].projection and tied_pr.tables["loss"].projection_penalty == 1 / 5200
    assert (base.paper["test_ppl"], tied.paper["test_ppl"], tied_pr.paper["test_ppl"]) == (114.5, 112.4, 100.9)
    assert load_recipe("wikitext-2-small-tied").paper == {}  # reference numbers are never inherited
    # Runs committed with tying 0.1's small-model schedule keep it in their recipes.
    for name in ("ptb-small-real", "wikitext-2-small-untied", "wikitext-2-small-tied", "wikitext-2-small-tied-pr"):
        old = load_recipe(name).train
        assert (old.decay_start, old.eval_batch_size) == (4, 10), name  # type: ignore[attr-defined]


def test_overrides_are_typed_recorded_and_mark_a_shortened_schedule() -> None:
    recipe = load_recipe("ptb-small-tied", ["train.epochs=2", "model.dropout=0.25", "data.corpus=builtin", 'loss.kind="real"'])
    assert recipe.train.epochs == 2 and recipe.tables["model"].dropout == 0.25 and recipe.tables["data"].corpus == "builtin"
    assert recipe.tables["loss"].kind == "real"
    assert recipe.overrides == ("train.epochs=2", "model.dropout=0.25", "data.corpus=builtin", 'loss.kind="real"')
    assert recipe.to_dict()["overrides"] == list(recipe.overrides)
    assert recipe.schedule_epochs == 13 and recipe.shortened
    assert not load_recipe("ptb-small-tied", ["train.epochs=20"]).shortened


def test_model_tie_false_is_the_boolean_false_and_builds_an_untied_model() -> None:
    recipe = load_recipe("ptb-small-tied", ["model.tie=false"])
    assert recipe.tables["model"].tie is False
    model = _build(recipe)
    assert model.decoder.weight is not model.encoder.weight


def test_every_lstm_model_option_is_a_recipe_key_with_the_same_default() -> None:
    keys = {name: field.default for name, field in LSTMModel.model_fields.items() if name != "arch"}
    options = {f.name: f.default for f in fields(LSTMConfig) if f.name != "vocab_size"}
    assert keys == options
    model = _build(load_recipe("ptb-small-tied-pr", ["model.uniform_output_biases=true"]))
    assert model.config.uniform_output_biases and model.decoder.bias.abs().max() > 0


# The six values of issue 10 that used to be accepted (the last one trained a tied model).
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=fast", r"train\.lr = 'fast': Input should be a valid number; allowed: a number"),
        ("train.epochs=2.5", r"train\.epochs = 2\.5: Input should be a valid integer; allowed: a whole number"),
        ("model.tie=yes", r"model\.tie = 'yes': Input should be a valid boolean; allowed: true or false"),
        ("train.bptt=0", r"train\.bptt = 0: Input should be greater than or equal to 1"),
        ("train.batch_size=-3", r"train\.batch_size = -3: Input should be greater than or equal to 1"),
        ("model.tie=False", r"model\.tie = 'False': Input should be a valid boolean; allowed: true or false \(a TOML boolean: lowercase, unquoted\)"),
    ],
)
def test_bad_override_values_name_file_override_key_value_and_what_is_allowed(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=rf"ptb-small-tied\.toml with override '{override}': {message}") as info:
        load_recipe("ptb-small-tied", [override])
    assert "\n" not in str(info.value)


def test_bad_value_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('base = "ptb-small-tied"\nname = "mine"\n[model]\ntie = "False"\n[train]\nepochs = 2.5\n')
    with pytest.raises(RecipeError, match=rf"^{path}: model\.tie = 'False': .*valid boolean.*; train\.epochs = 2\.5: .*valid integer"):
        load_recipe(path)


@given(st.integers(-10**9, 10**9) | st.booleans() | st.floats(allow_nan=False, allow_infinity=False))
def test_parse_override_reads_toml_values(value) -> None:
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    assert parse_override(f"train.x={text}") == (["train", "x"], value)


def test_recipe_file_with_base_by_path(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('base = "ptb-small-tied"\nname = "mine"\n[train]\nepochs = 3\n')
    (tmp_path / "child.toml").write_text('base = "mine.toml"\nname = "child"\n[model]\nhidden_size = 200\n')
    recipe = load_recipe(tmp_path / "child.toml")
    assert (recipe.name, recipe.train.epochs, recipe.tables["model"].tie, recipe.schedule_epochs) == ("child", 3, True, 3)
    assert recipe.source == str(tmp_path / "child.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\ntask = "lm"\n[model]\nhiden_size = 3\n', r"unknown key 'model\.hiden_size' \(known: arch, dropout, "),
        ('name = "x"\ntask = "lm"\nepochs = 3\n', r"unknown top-level key\(s\) \['epochs'\]"),
        ('name = "x"\ntask = "lm"\ncorpus = "ptb"\n', r"unknown top-level key\(s\) \['corpus'\]; known: \['base', 'data', "),
        ('name = "x"\ntask = "lm"\n[train]\nlr_schedule = "cosine"\n', r"train\.lr_schedule = 'cosine': Input should be 'plateau', 'step', 'constant', 'inverse_sqrt' or 'linear'"),
        ('name = "x"\n', r"'task' \(a string\) is required"),
        ('name = "x"\ntask = "nope"\n', r"task = 'nope': no task 'nope'; known tasks: autoencoder, cdef, "),
        ('name = "x\n', r"is not valid TOML"),
        ('base = "nope"\nname = "x"\n', r"no recipe 'nope': not a \.toml file and not a built-in recipe \(built-in: .*demo-tied"),
        ('base = "bad.toml"\nname = "x"\n', r"'base' chain loops"),
        ('name = "x"\ntask = "lm"\n[paper]\ntest_pll = 3\nwho = 1\n', r"unknown key\(s\) \['paper\.who'\]"),
        ('name = "x"\ntask = "lm"\n[paper]\ntest_ppl = 3\ntolerance = "3"\n', r"paper\.tolerance must be a positive number .*, got '3'"),
        ('name = "x"\ntask = "lm"\n[paper]\ntest_ppl = 3\ntolerance = 0\n', r"paper\.tolerance must be a positive number .*, got 0"),
        ('name = "x"\ntask = "lm"\n[paper]\ntest_ppl = 3\ntested = "final"\n', r"paper\.tested must be \"best\" or \"last\" .*, got 'final'"),
        ('name = "x"\ntask = "lm"\n[model]\narch = "transformer"\n[loss]\nkind = "real"\n', r"loss\.kind='real' and loss\.projection_penalty need model\.arch='lstm' or 'trellis'"),
        ('name = "x"\ntask = "lm"\n[model]\narch = "transformer"\ncontext_size = 8\n', r"train\.bptt=35 exceeds model\.context_size=8"),
        ('name = "x"\ntask = "lm"\n[loss]\nkind = "real"\nfused = true\n', r"fused=true computes plain cross-entropy"),
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
    with pytest.raises(RecipeError, match=r"with override 'train\.epoch=2': unknown key 'train\.epoch'"):
        load_recipe("ptb-small-tied", ["train.epoch=2"])
    with pytest.raises(RecipeError, match=r"override 'name\.x=1': 'name' is not a table"):
        load_recipe("ptb-small-tied", ["name.x=1"])


def test_transformer_recipe_trains_on_windows_without_carried_state(tiny_corpus_dir: Path) -> None:
    recipe = load_recipe("ptb-transformer-tied", [f"data.corpus={str(tiny_corpus_dir)!r}", "model.embedding_size=16", "train.bptt=10"])
    task = recipe.make_task()
    data = task.load_data(None)
    assert isinstance(data, LMDataset)
    model = task.build_model(data)
    out = task.step(model, task.train_batches(data, 1)[0], None)
    assert out.carry is None and out.count == 10 * 32 and out.loss.requires_grad
