"""TrellisLanguageModel: the depth tie is one tensor whose gradient sums every level's, the
output equals an unrolled F.conv1d reference (across carried windows too), checkpoints store the
level weights once, summary shows the sharing, parameter counts, and the one-line errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import tying
from tying.models import TrellisConfig, TrellisLanguageModel

LEVEL_NAMES = ("weight_x", "weight_h", "bias")


def _model(depth: str = "tied", *, levels: int = 3, k: int = 2, e: int = 6, h: int = 5, v: int = 30, seed: int = 0) -> TrellisLanguageModel:
    torch.manual_seed(seed)
    config = TrellisConfig(v, e, h, levels=levels, kernel_size=k, depth=depth)  # type: ignore[arg-type]
    return TrellisLanguageModel(config).double()


def _reference(model: TrellisLanguageModel, tokens: torch.Tensor) -> torch.Tensor:
    """The trellis unrolled with plain F.conv1d (batch-first, channels x time), from a zero state."""
    c = model.config
    x = F.embedding(tokens, model.encoder.weight).permute(1, 2, 0)  # (B, E, T)
    steps, pad = x.size(2), c.kernel_size - 1
    h = x.new_zeros(x.size(0), c.hidden_size, steps)
    cell = torch.zeros_like(h)
    for level in model.levels:
        pre = F.conv1d(F.pad(x, (pad, 0)), level.weight_x, level.bias) + F.conv1d(F.pad(h, (pad, 0)), level.weight_h)
        i, o, g, f = pre.chunk(4, dim=1)
        cell = torch.sigmoid(f) * F.pad(cell, (1, 0))[:, :, :steps] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(cell)
    out = h.permute(2, 0, 1)
    return model.logits(out if model.projection is None else model.projection(out))


@settings(max_examples=15, deadline=None)
@given(steps=st.integers(1, 7), batch=st.integers(1, 3), k=st.integers(1, 4), levels=st.integers(1, 4), depth=st.sampled_from(["tied", "untied"]))
def test_output_equals_an_unrolled_conv1d_reference(steps: int, batch: int, k: int, levels: int, depth: str) -> None:
    model = _model(depth, levels=levels, k=k).eval()
    tokens = torch.randint(0, 30, (steps, batch))
    logits, _ = model(tokens, model.init_state(batch))
    torch.testing.assert_close(logits, _reference(model, tokens), rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(first=st.integers(1, 6), second=st.integers(1, 6), k=st.integers(1, 5), levels=st.integers(1, 3))
def test_state_carried_across_windows_gives_the_one_long_window(first: int, second: int, k: int, levels: int) -> None:
    """A kernel longer than a window is no error: its history comes from the carried state."""
    model = _model(levels=levels, k=k).eval()
    tokens = torch.randint(0, 30, (first + second, 2))
    whole, _ = model(tokens, model.init_state(2))
    a, state = model(tokens[:first], model.init_state(2))
    b, _ = model(tokens[first:], state)
    torch.testing.assert_close(torch.cat([a, b]), whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(whole, _reference(model, tokens), rtol=1e-12, atol=1e-12)


def test_depth_tie_is_one_tensor_whose_grad_is_the_sum_of_every_levels() -> None:
    tied, untied = _model("tied", levels=4), _model("untied", levels=4)
    untied.load_state_dict(tied.state_dict())  # every untied level starts at the shared weights
    for name in LEVEL_NAMES:
        first = getattr(tied.levels[0], name)
        assert all(getattr(level, name) is first for level in tied.levels)
        assert len({getattr(level, name).data_ptr() for level in untied.levels}) == 4
    tokens = torch.randint(0, 30, (6, 3))
    for model in (tied, untied):
        model.train()
        torch.manual_seed(1)  # no dropout configured; the same draws regardless
        logits, _ = model(tokens, model.init_state(3))
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    for name in LEVEL_NAMES:
        summed = sum(getattr(level, name).grad for level in untied.levels)
        torch.testing.assert_close(getattr(tied.levels[0], name).grad, summed, rtol=1e-10, atol=1e-13)
    assert tied.decoder.weight is tied.encoder.weight


def test_tied_levels_hold_one_lth_of_the_untied_layer_weights() -> None:
    v, e, h, k, levels = 40, 8, 6, 3, 5
    level = 4 * h * (e + h) * k + 4 * h
    tied, untied = (tying.summary(_model(d, levels=levels, k=k, e=e, h=h, v=v)) for d in ("tied", "untied"))
    embedding_and_bias = v * e + v + (h * e + e)  # tied in/out embedding, output bias, projection (h != e)
    assert tied.unique_parameters == embedding_and_bias + level
    assert untied.unique_parameters == embedding_and_bias + levels * level
    assert tied.total_parameters == untied.total_parameters  # with duplicates (state_dict): the same network


def test_summary_shows_the_depth_sharing() -> None:
    text = str(tying.summary(_model(levels=3)))
    assert "levels.0.weight_h, levels.1.weight_h, levels.2.weight_h" in text
    assert "levels: 3 layers over 1 set (all): A A A" in text
    assert "levels:" not in str(tying.summary(_model("untied", levels=3)))


def test_save_load_gives_the_same_outputs_and_stores_the_level_weights_once(tmp_path: Path) -> None:
    model = _model(levels=4, k=3).eval()
    path = tying.save(model, tmp_path / "trellis.safetensors")
    with safe_open(str(path), framework="pt") as f:
        level_keys = sorted(k for k in f.keys() if k.startswith("levels."))
    assert level_keys == ["levels.0.bias", "levels.0.weight_h", "levels.0.weight_x"]
    fresh = _model(levels=4, k=3, seed=5).eval()
    tying.load(fresh, path)
    assert fresh.levels[3].weight_h is fresh.levels[0].weight_h
    tokens = torch.randint(0, 30, (7, 2))
    torch.testing.assert_close(fresh(tokens, fresh.init_state(2))[0], model(tokens, model.init_state(2))[0], rtol=0, atol=0)


def test_untied_embeddings_and_equal_widths_need_no_projection() -> None:
    model = TrellisLanguageModel(TrellisConfig(30, 6, 6, levels=2, tie_embeddings=False))
    assert model.projection is None and model.decoder.weight is not model.encoder.weight
    assert TrellisLanguageModel(TrellisConfig(30, 6, 6, levels=2)).projection is None


def test_dropout_masks_train_and_switch_off_in_eval() -> None:
    config = TrellisConfig(30, 6, 6, levels=2, input_dropout=0.3, hidden_dropout=0.3, output_dropout=0.3, embedding_dropout=0.1)
    model = TrellisLanguageModel(config)
    tokens = torch.randint(0, 30, (5, 2))
    a, _ = model(tokens, model.init_state(2))
    b, _ = model(tokens, model.init_state(2))
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(tokens, model.init_state(2))[0], model(tokens, model.init_state(2))[0])
    assert model.hidden_mask(2) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"levels": 0}, r"^levels must be >= 1, got 0$"),
        ({"kernel_size": 0}, r"^kernel_size must be >= 1, got 0$"),
        ({"hidden_dropout": 1.0}, r"^hidden_dropout must be in \[0, 1\), got 1.0$"),
        ({"depth": "half"}, r"^depth must be 'tied', 'untied' or 'equilibrium', got 'half'$"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TrellisConfig(30), **changes)  # type: ignore[arg-type]


def test_a_state_of_another_shape_and_an_empty_window_are_one_line_errors() -> None:
    model = _model(levels=2, k=3)
    with pytest.raises(ValueError, match=r"^state history \(1, 2, 6\) / \(2, 1, 2, 5\) does not fit kernel_size=3, levels=2 and a batch of 2"):
        model(torch.zeros(4, 2, dtype=torch.long), _model(levels=2, k=2).init_state(2))
    with pytest.raises(ValueError, match=r"^tokens must be \(T, B\) with T >= 1, got shape \(0, 2\)$"):
        model(torch.zeros(0, 2, dtype=torch.long), model.init_state(2))
