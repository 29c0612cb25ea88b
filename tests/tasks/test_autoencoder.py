"""The autoencoder task: recipes validate, tied / untied / equal-parameter models are built as
the recipes say, a tiny compare trains end to end and writes the reconstructions figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import tying
from tying.models.autoencoder import AutoEncoderConfig, equal_parameter_widths, parameter_count
from tying.recipes import RecipeError, expand_seeds, load_recipe, read_metrics, run_recipes
from tying.recipes.report import write_report
from tying.tasks.autoencoder import SHOWN

pytest.importorskip("sklearn")
NAMES = ["digits-ae-tied", "digits-ae-untied", "digits-ae-untied-equal-params"]


def test_recipes_build_tied_untied_and_equal_parameter_models() -> None:
    tied, untied, equal = (load_recipe(n) for n in NAMES)
    data = tied.make_task().load_data(None)
    assert (len(data.train), len(data.valid), len(data.test)) == (1295, 143, 359)
    models = [r.make_task().build_model(data) for r in (tied, untied, equal)]
    assert [m.config.widths for m in models[:2]] == [(64, 32, 16), (64, 32, 16)]
    assert torch.equal(models[0].decoder[1].weight, models[0].encoder[0].weight.T)
    assert [t.describe() for t in tying.get_spec(models[0]).ties] == [
        "encoder.1.weight -[transpose]-> decoder.0.weight",
        "encoder.0.weight -[transpose]-> decoder.1.weight",
    ]
    assert not tying.get_spec(models[1]).ties and not tying.get_spec(models[2]).ties
    counts = [tying.summary(m).unique_parameters for m in models]
    assert counts[:2] == [parameter_count(AutoEncoderConfig((64, 32, 16))), parameter_count(AutoEncoderConfig((64, 32, 16), tied=False))]
    assert models[2].config.widths == equal_parameter_widths(AutoEncoderConfig((64, 32, 16))) and abs(counts[2] - counts[0]) < 0.05 * counts[0]


def test_bad_settings_are_refused_naming_the_key() -> None:
    with pytest.raises(RecipeError, match=r"model\.equal_parameters = true sizes an untied model .* set model\.tie = false"):
        load_recipe("digits-ae-tied", ["model.equal_parameters=true"])
    with pytest.raises(RecipeError, match=r"model\.hidden\.1 = 0: Input should be greater than or equal to 1"):
        load_recipe("digits-ae-tied", ["model.hidden=[8, 0]"])
    with pytest.raises(RecipeError, match=r"model\.activation = 'softmax': Input should be 'sigmoid', 'tanh' or 'relu'"):
        load_recipe("digits-ae-tied", ["model.activation='softmax'"])


@pytest.mark.slow
def test_tiny_compare_trains_and_draws_reconstructions(tmp_path: Path) -> None:
    runs = expand_seeds([load_recipe(n, ["train.epochs=3", "model.hidden=[16, 8]"]) for n in NAMES])
    run_recipes(runs, tmp_path)
    records = [read_metrics(tmp_path / n) for n in NAMES]
    for record in records:
        assert record is not None and record["task"] == "autoencoder" and record["unit"] == "examples"
        history = [h["valid_mse"] for h in record["history"]]
        assert history[-1] < history[0] and 0 < record["test"]["mse"] < 0.2
        extras = record["extras"]
        assert len(extras["originals"]) == len(extras["reconstructions"]) == SHOWN and len(extras["reconstructions"][0]) == 64
        assert all(0.0 <= v <= 1.0 for row in extras["reconstructions"] for v in row)
    assert records[0]["extras"]["originals"] == records[1]["extras"]["originals"]  # the same test digits
    assert records[0]["extras"]["widths"] == [64, 16, 8]
    _, files = write_report(runs, tmp_path, "digits", report="ae")
    assert [f.name for f in files] == ["ae.md", "ae.csv", "ae-valid-mse.png", "ae-test-vs-params.png", "ae-reconstructions.png"]
    with Image.open(tmp_path / "ae-reconstructions.png") as image:
        width, height = image.size
    assert width > height > 0  # one row of originals and a row per run, SHOWN digits wide
    table = (tmp_path / "ae.md").read_text()
    assert "| best valid MSE | test MSE |" in table and "](ae-reconstructions.png)" in table and "layer sets" not in table
