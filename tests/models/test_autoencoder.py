"""AutoEncoder: the transposed ties (decoder k reads encoder L-1-k), one gradient leaf per tied
pair, parameter counts against the closed form, equal-size widths, checkpoints, and the digits
data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import tying
from tying.tasks.autoencoder import DIGIT_PIXELS, load_digit_images
from tying.models import AutoEncoder, AutoEncoderConfig
from tying.models.autoencoder import equal_parameter_widths, parameter_count, reconstruction_mse

DEEP = AutoEncoderConfig((64, 24, 12, 6))


def _ae(config: AutoEncoderConfig = DEEP, seed: int = 0) -> AutoEncoder:
    torch.manual_seed(seed)
    return AutoEncoder(config)


def test_decoder_layer_k_reads_encoder_layer_l_minus_1_minus_k_transposed() -> None:
    model = _ae()
    assert [t.describe() for t in tying.get_spec(model).ties] == [
        "encoder.2.weight -[transpose]-> decoder.0.weight",
        "encoder.1.weight -[transpose]-> decoder.1.weight",
        "encoder.0.weight -[transpose]-> decoder.2.weight",
    ]
    for k in range(3):
        assert torch.equal(model.decoder[k].weight, model.encoder[2 - k].weight.T)
        assert model.decoder[k].parametrizations.weight.original is model.encoder[2 - k].weight
        assert model.decoder[k].bias.shape == (DEEP.widths[2 - k],)  # biases stay per layer
    tying.verify(model)
    untied = _ae(AutoEncoderConfig(DEEP.widths, tied=False))
    assert not tying.get_spec(untied).ties and not tying.find_ties(untied)


def test_gradient_of_both_uses_reaches_one_leaf() -> None:
    model = _ae()
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(1))
    F.mse_loss(model(x), x).backward()
    leaves = [p for p in model.parameters() if p.dim() == 2]
    assert len(leaves) == 3 and all(p.grad is not None for p in leaves)
    # The same gradient from an untied copy: encoder use plus decoder use (transposed back), two terms.
    untied = _ae(AutoEncoderConfig(DEEP.widths, tied=False), seed=9)
    with torch.no_grad():
        for k in range(3):
            untied.encoder[k].load_state_dict(model.encoder[k].state_dict())
            untied.decoder[k].weight.copy_(model.decoder[k].weight)
            untied.decoder[k].bias.copy_(model.decoder[k].bias)
    F.mse_loss(untied(x), x).backward()
    for k in range(3):
        expected = untied.encoder[k].weight.grad + untied.decoder[2 - k].weight.grad.T
        torch.testing.assert_close(model.encoder[k].weight.grad, expected, rtol=1e-6, atol=1e-9)


@given(widths=st.lists(st.integers(1, 40), min_size=2, max_size=5), tied=st.booleans())
def test_parameter_count_matches_the_model(widths: list[int], tied: bool) -> None:
    config = AutoEncoderConfig(tuple(widths), tied=tied)
    assert parameter_count(config) == tying.count_parameters(AutoEncoder(config))


@given(widths=st.lists(st.integers(2, 64), min_size=2, max_size=4))
def test_equal_parameter_widths_is_the_closest_single_scale(widths: list[int]) -> None:
    config = AutoEncoderConfig(tuple(widths))
    found = equal_parameter_widths(config)
    target = parameter_count(config)
    assert found[0] == widths[0] and len(found) == len(widths)
    gap = abs(parameter_count(AutoEncoderConfig(found, tied=False)) - target)
    # No untied model with every hidden width one smaller or one larger comes closer.
    for step in (-1, 1):
        other = (widths[0], *(max(1, w + step) for w in found[1:]))
        assert gap <= abs(parameter_count(AutoEncoderConfig(other, tied=False)) - target)


def test_equal_parameter_widths_single_layer_closed_form() -> None:
    # Tied 64-32: 64*32 + 32 + 64 = 2144; untied 64-h: 129 h + 64, so h = 16 (2128).
    assert equal_parameter_widths(AutoEncoderConfig((64, 32))) == (64, 16)


def test_checkpoint_round_trip_restores_the_transposed_ties(tmp_path: Path) -> None:
    model = _ae()
    path = tying.save(model, tmp_path / "ae.safetensors")
    fresh = _ae(AutoEncoderConfig(DEEP.widths, tied=False), seed=4)
    result = tying.load(fresh, path)
    assert result.applied_ties == tying.get_spec(model).ties
    assert fresh.decoder[0].parametrizations.weight.original is fresh.encoder[2].weight
    x = torch.rand(3, 64)
    assert torch.equal(fresh(x), model(x))
    stored = sum(t.nbytes for t in tying.read_checkpoint(path).tensors)
    assert stored == 4 * parameter_count(DEEP)  # float32, each tied matrix once


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"widths must be two or more positive integers .* got \(64,\)"):
        AutoEncoderConfig((64,))
    with pytest.raises(ValueError, match=r"activation 'gelu' is not one of sigmoid, tanh, relu"):
        AutoEncoderConfig((4, 2), activation="gelu")  # type: ignore[arg-type]


def test_digits_are_split_scaled_and_reconstructed() -> None:
    train, test = load_digit_images(test_fraction=0.2, seed=0)
    assert train.shape == (1438, DIGIT_PIXELS) and test.shape == (359, DIGIT_PIXELS)
    assert train.dtype == torch.float32 and 0.0 == train.min() and train.max() == 1.0
    again, _ = load_digit_images(test_fraction=0.2, seed=0)
    assert torch.equal(train, again)
    model = _ae(AutoEncoderConfig((64, 16)))
    before = reconstruction_mse(model, test)
    assert before == pytest.approx(F.mse_loss(model(test), test).item(), rel=1e-6) and model.training
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        F.mse_loss(model(train), train).backward()
        opt.step()
    assert reconstruction_mse(model, test) < before / 2
    with pytest.raises(ValueError, match=r"test_fraction must lie strictly between 0 and 1, got 1.5"):
        load_digit_images(test_fraction=1.5)
