"""One source of truth for model settings: each recipe ``[model]`` table is derived from its model's
config dataclass (names, types, defaults, bounds), the bounds live on the dataclass, which refuses
bad values in Python too, and recipe errors stay as clear as before."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest
from pydantic import ValidationError

from tying.constraints import Range, check_ranges, ranges
from tying.errors import TieError
from tying.models import AutoEncoderConfig, LSTMConfig, TransformerConfig, TranslationConfig
from tying.recipes import RecipeError, load_recipe
from tying.tasks.autoencoder import AutoEncoderModel
from tying.tasks.lm import LSTMModel, TransformerModel
from tying.tasks.translation import TranslationModel
from tying.training import Table, TrainConfig, build_config, config_table

#: table -> (its dataclass, the fields the task fills in, the fields the task adds)
TABLES: list[tuple[type[Table], type, set[str], set[str]]] = [
    (LSTMModel, LSTMConfig, {"vocab_size"}, {"arch"}),
    (TransformerModel, TransformerConfig, {"vocab_size"}, {"arch"}),
    (TranslationModel, TranslationConfig, {"src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id"}, set()),
    (AutoEncoderModel, AutoEncoderConfig, {"widths", "tied"}, {"hidden", "tie", "equal_parameters"}),
]


def _bounds(info: Any) -> dict[str, Any]:
    return {k: getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}


@pytest.mark.parametrize(("table", "config", "filled", "added"), TABLES, ids=lambda x: getattr(x, "__name__", ""))
def test_each_model_table_is_its_dataclass_with_the_same_defaults_and_bounds(table: type[Table], config: type, filled: set[str], added: set[str]) -> None:
    fields = {f.name: f for f in dataclasses.fields(config)}
    assert set(table.model_fields) == (set(fields) - filled) | added
    for name in set(fields) - filled:
        info = table.model_fields[name]
        assert info.default == fields[name].default, name
        assert _bounds(info) == ranges(config).get(name, Range()).bounds(), name
    assert table.model_config["strict"] and table.model_config["extra"] == "forbid"


def test_the_models_refuse_out_of_range_settings_in_python() -> None:
    with pytest.raises(ValueError, match=r"^dropout must be in \[0, 1\), got 1\.0$"):
        LSTMConfig(vocab_size=10, dropout=1.0)
    with pytest.raises(ValueError, match=r"^embedding_size must be >= 1, got 0$"):
        LSTMConfig(vocab_size=10, embedding_size=0)
    with pytest.raises(ValueError, match=r"^init_std must be > 0, got 0\.0$"):
        TransformerConfig(vocab_size=10, init_std=0.0)
    with pytest.raises(ValueError, match=r"^embedding_size must be >= 2, got 1$"):
        TranslationConfig(10, 10, embedding_size=1, num_heads=1)
    with pytest.raises(TieError, match=r"strategy 'cycle_rev' needs unique to divide the number of layers"):
        TransformerConfig(vocab_size=10, num_layers=4, share_unique=3)
    assert LSTMConfig(vocab_size=10, last_layer_size=None, input_dropout=None).input_dropout is None  # None: not set


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dropout=1.5", r"model\.dropout = 1\.5: Input should be less than 1"),
        ("model.embedding_size=0", r"model\.embedding_size = 0: Input should be greater than or equal to 1"),
        ("model.init_range=0.0", r"model\.init_range = 0\.0: Input should be greater than 0"),
        ("model.hidden_size=2.5", r"model\.hidden_size = 2\.5: Input should be a valid integer; allowed: a whole number"),
        ("model.last_layer_size=0", r"model\.last_layer_size = 0: Input should be greater than or equal to 1"),
        ("model.vocab_size=3", r"unknown key 'model\.vocab_size' \(known: arch, dropout, embedding_dropout, "),
    ],
)
def test_bad_model_values_in_a_recipe_name_file_key_value_and_what_is_allowed(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=rf"ptb-small-tied\.toml with override '{override}': {message}"):
        load_recipe("ptb-small-tied", [override])


def test_bad_translation_and_autoencoder_model_values_are_refused() -> None:
    with pytest.raises(RecipeError, match=r"model\.label_smoothing = 1\.0: Input should be less than 1"):
        load_recipe("builtin-translation", ["model.label_smoothing=1.0"])
    with pytest.raises(RecipeError, match=r"model\.activation = 'gelu': Input should be 'sigmoid', 'tanh' or 'relu'"):
        load_recipe("digits-ae-tied", ['model.activation="gelu"'])


@dataclass(frozen=True)
class _Config:
    size: Annotated[int, Range(ge=1)]
    rate: Annotated[float, Range(gt=0, le=1)] = 0.5
    names: tuple[str, ...] = field(default_factory=lambda: ("a",))
    optional: Annotated[int | None, Range(ge=2)] = None

    def __post_init__(self) -> None:
        check_ranges(self)


def test_config_table_derives_a_strict_table_from_any_dataclass() -> None:
    table = config_table(_Config, name="Mine", fields={"kind": (str, "x")})
    assert list(table.model_fields) == ["kind", "size", "rate", "names", "optional"]
    with pytest.raises(ValidationError, match=r"size\n  Field required"):
        table()
    mine = table(size=3, optional=2)
    assert build_config(_Config, mine) == _Config(3, 0.5, ("a",), 2)  # "kind" is the table's own
    for bad in ({"size": 0}, {"size": 1, "rate": 0.0}, {"size": 1, "rate": 1.5}, {"size": 1, "optional": 1}, {"size": "3"}, {"size": 1, "other": 1}):
        with pytest.raises(ValidationError):
            table(**bad)
    filled = config_table(_Config, name="Filled", exclude={"size"})
    assert build_config(_Config, filled(rate=1.0), size=7) == _Config(7, 1.0)
    assert "size" not in filled.model_fields and "(filled in from the data)" in (filled.__doc__ or "")


def test_range_describes_its_bounds() -> None:
    assert [Range(ge=0, lt=1).describe(), Range(ge=1).describe(), Range(gt=0).describe(), Range(le=5).describe()] == ["in [0, 1)", ">= 1", "> 0", "<= 5"]
    assert Range(gt=0, le=1).describe() == "in (0, 1]" and Range(ge=1).holds(None)


def test_tuple_fields_take_toml_arrays_and_keep_their_length_check() -> None:
    @dataclasses.dataclass(frozen=True)
    class Sizes:
        widths: tuple[int, int] = (4, 8)
        rates: tuple[int, ...] = (2, 4)

    table = config_table(Sizes, name="SizesTable")
    assert table.model_validate({"widths": [1, 2], "rates": [3, 5, 7]}).rates == (3, 5, 7)  # TOML arrays
    with pytest.raises(ValidationError, match="at most 2 items"):
        table.model_validate({"widths": [1, 2, 3]})
    with pytest.raises(ValidationError, match="valid integer"):
        table.model_validate({"widths": [1, "2"]})  # still strict inside
    assert TrainConfig.model_validate({"betas": [0.8, 0.9]}).betas == (0.8, 0.9)
