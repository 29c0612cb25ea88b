"""The deq-linear task: the recipes build the equilibrium, shallow and finite-depth models; the
equilibrium (tying.nn.Implicit) matches its closed form; the optimum is least squares; the rate fit
reads a geometric sequence exactly; a tiny compare trains end to end and draws the gap figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tying.models.deqlinear import DEQLinear, DEQLinearConfig
from tying.recipes import RecipeError, expand_seeds, load_recipe, read_metrics, run_recipes
from tying.recipes.report import write_report
from tying.tasks.deqlinear import least_squares_optimum, linear_rate

pytest.importorskip("sklearn")
NAMES = ["deq-linear-deq", "deq-linear-shallow", "deq-linear-depth3", "deq-linear-depth10"]


def test_recipes_build_the_four_models() -> None:
    recipes = [load_recipe(n) for n in NAMES]
    data = recipes[0].make_task().load_data(None)
    assert (len(data.train_x), len(data.test_x), data.train_x.dtype) == (354, 88, torch.float64)
    models = [r.make_task().build_model(data) for r in recipes]
    assert [m.config.depth for m in models] == [None, 1, 3, 10]
    assert models[0].deq is not None and models[1].block is None
    assert [sum(p.numel() for p in m.parameters()) for m in models] == [110, 10, 110, 110]


def test_the_equilibrium_is_the_closed_form_and_the_limit_of_depth() -> None:
    torch.manual_seed(0)
    deq = DEQLinear(DEQLinearConfig(5, 2)).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    torch.testing.assert_close(deq(x), deq.closed_form(x), rtol=1e-9, atol=1e-10)
    deep = DEQLinear(DEQLinearConfig(5, 2, depth=200)).double()
    deep.load_state_dict({k.replace('deq.f.', 'stack.'): v for k, v in deq.state_dict().items()})
    torch.testing.assert_close(deep(x), deq(x), rtol=1e-9, atol=1e-10)
    assert float(torch.linalg.matrix_norm(deq.block.matrix().detach(), 2)) < 0.8  # type: ignore[union-attr]


def test_the_optimum_is_least_squares_and_no_model_goes_below_it() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 4, dtype=torch.float64, generator=g), torch.randn(50, 1, dtype=torch.float64, generator=g)
    w = torch.linalg.solve(x.T @ x, x.T @ y)
    assert least_squares_optimum(x, y) == pytest.approx(float((x @ w - y).square().mean()), rel=1e-12)
    model = DEQLinear(DEQLinearConfig(4, 1, depth=3)).double()
    assert float((model(x) - y).square().mean().detach()) >= least_squares_optimum(x, y)


def test_linear_rate_reads_a_geometric_sequence() -> None:
    gaps = [0.9**t for t in range(300)]
    fit = linear_rate(gaps, optimum=0.5)
    assert fit["rate"] == pytest.approx(0.9, rel=1e-9) and fit["r2"] == pytest.approx(1.0)
    assert linear_rate([1.0, 0.5], optimum=0.5)["rate"] != linear_rate([1.0, 0.5], optimum=0.5)["rate"]  # NaN: too short


def test_bad_settings_are_refused_naming_the_key() -> None:
    with pytest.raises(RecipeError, match=r"model\.gamma = 1\.0: Input should be less than 1"):
        load_recipe("deq-linear-deq", ["model.gamma=1.0"])
    with pytest.raises(RecipeError, match=r"model\.delta = 0\.1: Input should be greater than or equal to 0\.25"):
        load_recipe("deq-linear-deq", ["model.delta=0.1"])
    with pytest.raises(RecipeError, match=r"model\.depth = 0: Input should be greater than or equal to 1"):
        load_recipe("deq-linear-deq", ["model.depth=0"])


@pytest.mark.slow
def test_tiny_compare_trains_and_draws_the_gap(tmp_path: Path) -> None:
    runs = expand_seeds([load_recipe(n, ["train.epochs=2", "train.steps_per_epoch=20"]) for n in NAMES])
    run_recipes(runs, tmp_path)
    records = [read_metrics(tmp_path / n) for n in NAMES]
    for record in records:
        assert record is not None and record["task"] == "deq-linear"
        gaps = record["extras"]["gaps"]
        assert len(gaps) == 40 and gaps[-1] < gaps[0] and min(gaps) > -1e-9
        assert record["test"]["gap"] > 0
    assert records[1]["extras"]["contraction"] is None and 0 < records[0]["extras"]["contraction"] < 0.8
    _, files = write_report(runs, tmp_path, "deq-linear", report="deq")
    assert "deq-gap.png" in [f.name for f in files]
    assert "](deq-gap.png)" in (tmp_path / "deq.md").read_text()


def test_the_models_own_config_refuses_out_of_range_widths_and_tolerances() -> None:
    from tying.models.deqlinear import DEQLinearConfig

    with pytest.raises(ValueError, match=r"^in_features must be >= 1, got 0$"):
        DEQLinearConfig(0)
    with pytest.raises(ValueError, match=r"^tol must be > 0, got 0.0$"):
        DEQLinearConfig(3, tol=0.0)
