"""The lm task with ``arch = "trellis"``: the recipes resolve to the trellis table, the tied and
untied depth recipes differ only in ``depth``, loss options are checked, and a short training
run on the built-in corpus carries the state and lowers the loss; the DEQ recipe builds the
equilibrium model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tying.models import TrellisLanguageModel
from tying.recipes import load_recipe, read_metrics, train_recipe
from tying.tasks.lm import LMTask, TrellisModel

TINY = ["data.corpus=builtin", "model.embedding_size=16", "model.hidden_size=16", "model.levels=3", "train.batch_size=4", "train.bptt=12"]


def _task(overrides: list[str], recipe: str = "ptb-depth-trellis") -> LMTask:
    task = load_recipe(recipe, TINY + overrides).make_task()
    assert isinstance(task, LMTask)
    return task


def test_the_deq_recipe_builds_one_level_run_to_its_fixed_point() -> None:
    task = load_recipe("ptb-depth-deq", [x for x in TINY if not x.startswith("model.levels")]).make_task()
    model = task.model_for(50)
    assert isinstance(model, TrellisLanguageModel) and len(model.levels) == 1 and model.equilibrium is not None
    assert (model.equilibrium.solver, model.equilibrium.max_iter, model.equilibrium.backward) == ("fixed_point", 50, "implicit")


def test_a_kernel_longer_than_the_training_window_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"model.kernel_size=13 is longer than a training window \(train.bptt=12\)$"):
        _task(["model.kernel_size=13"])


def test_depth_recipes_build_a_tied_trellis_and_an_untied_tcn() -> None:
    trellis, tcn = (_task([], name) for name in ("ptb-depth-trellis", "ptb-depth-tcn"))
    assert isinstance(trellis.config["model"], TrellisModel) and trellis.recurrent
    a, b = trellis.model_for(50), tcn.model_for(50)
    assert isinstance(a, TrellisLanguageModel) and isinstance(b, TrellisLanguageModel)
    assert a.levels[2].weight_h is a.levels[0].weight_h and b.levels[2].weight_h is not b.levels[0].weight_h
    assert a.decoder.weight is a.encoder.weight
    assert a.config.depth == "tied" and b.config.depth == "untied"


def test_projection_penalty_needs_the_trellis_projection() -> None:
    with pytest.raises(ValueError, match=r"ptb-depth-trellis.toml with override 'loss.projection_penalty=0.1': loss.projection_penalty needs a projection: .*model.hidden_size \(16\) != model.embedding_size \(16\)$"):
        _task(["loss.projection_penalty=0.1"])
    task = _task(["model.hidden_size=24", "loss.projection_penalty=0.1"])
    assert task.model_for(50).projection is not None


@pytest.mark.slow
def test_a_short_trellis_run_on_the_builtin_corpus_lowers_the_loss(tmp_path: Path) -> None:
    recipe = load_recipe("ptb-depth-trellis", [*TINY, "train.epochs=3", "train.max_batches=30", "train.lr=0.01"])
    train_recipe(recipe, tmp_path)
    record = read_metrics(tmp_path)
    assert record is not None
    losses = [h["train_loss"] for h in record["history"]]
    assert losses[-1] < losses[0]
    assert record["history"][-1]["valid_loss"] < record["history"][0]["valid_loss"]
    assert record["layer_sharing"][0]["text"] == "levels: 3 layers over 1 set (all): A A A"


def test_the_sharing_figure_needs_one_architecture() -> None:
    def record(arch: str, sharing: list[dict[str, object]]) -> dict[str, object]:
        return {"recipe": {"model": {"arch": arch}}, "layer_sharing": sharing}

    tied = [{"strategy": "all", "unique": 1}]
    assert [f.name for f in LMTask.report_figures([record("trellis", tied), record("trellis", [])])] == ["sharing"]
    assert LMTask.report_figures([record("trellis", tied), record("lstm", [])]) == []  # N means levels in one, layers in the other
    assert LMTask.report_figures([record("trellis", []), record("trellis", [])]) == []
