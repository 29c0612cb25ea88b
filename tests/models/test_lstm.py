"""LSTMLanguageModel: parameter counts of every variant, the tie, gradients, shapes, dropout
options, init and checkpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tying
from tying.errors import TieError
from tying.models import LSTMConfig, LSTMLanguageModel


def _lstm_params(layers: int, d: int, h: int, last: int | None = None) -> int:
    # Per layer of width n reading m: W_ih (4n x m), W_hh (4n x n), b_ih and b_hh (4n each).
    widths = [d] + [h] * (layers - 1) + [last or h]
    return sum(4 * n * (m + n + 2) for m, n in zip(widths, widths[1:]))


@pytest.mark.parametrize(
    ("tie", "projection", "expected"),
    # Press & Wolf 2017's small models at V = 10,000: 4.65M, 2.65M, 4.69M, 2.69M.
    [(False, False, 4_653_200), (True, False, 2_653_200), (False, True, 4_693_400), (True, True, 2_693_400)],
)
def test_press_wolf_small_variants_have_the_papers_parameter_counts(tie: bool, projection: bool, expected: int) -> None:
    V, d = 10_000, 200
    model = LSTMLanguageModel(LSTMConfig(V, d, d, num_layers=2, tie=tie, projection=projection))
    closed_form = V * d + _lstm_params(2, d, d) + (d * d + d if projection else 0) + (0 if tie else V * d) + V
    assert tying.summary(model).unique_parameters == closed_form == expected


def test_projection_without_bias_drops_exactly_its_d_parameters() -> None:
    with_bias = LSTMLanguageModel(LSTMConfig(100, 16, 16, num_layers=1, tie=True, projection=True))
    without = LSTMLanguageModel(LSTMConfig(100, 16, 16, num_layers=1, tie=True, projection=True, projection_bias=False))
    assert without.projection is not None and without.projection.bias is None
    assert tying.count_parameters(with_bias) - tying.count_parameters(without) == 16


def test_projection_head_ties_when_hidden_differs_from_embedding() -> None:
    V, d, H = 300, 16, 40
    model = LSTMLanguageModel(LSTMConfig(V, d, H, num_layers=2, tie=True, projection=True))
    assert model.decoder.weight is model.encoder.weight
    assert model.projection.weight.shape == (d, H)
    closed_form = V * d + _lstm_params(2, d, H) + (H * d + d) + V
    assert tying.summary(model).unique_parameters == closed_form
    logits, _ = model(torch.randint(0, V, (5, 3)), model.init_state(3))
    assert logits.shape == (5, 3, V)


def test_awd_style_last_layer_sized_to_the_embedding_ties() -> None:
    V, d, H = 300, 16, 48
    model = LSTMLanguageModel(LSTMConfig(V, d, H, num_layers=3, tie=True, last_layer_size=d))
    assert model.decoder.weight is model.encoder.weight and model.projection is None
    assert [r.hidden_size for r in model.rnns] == [H, H, d]
    assert [s[0].shape for s in model.init_state(2)] == [(1, 2, H), (1, 2, H), (1, 2, d)]
    assert tying.summary(model).unique_parameters == V * d + _lstm_params(3, d, H, last=d) + V
    features, _ = model.features(torch.randint(0, V, (4, 2)), model.init_state(2))
    assert features.shape == (4, 2, d)


def test_locked_dropout_reuses_one_mask_across_time() -> None:
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(50, 32, 32, num_layers=1, dropout=0.5, variational=True))
    drop = model.drop.train()
    out = drop(torch.ones(6, 3, 32))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(out, out[:1].expand_as(out))  # the same mask at every step
    assert torch.equal(drop.eval()(out), out)


def test_embedding_dropout_drops_whole_words_and_keeps_the_tied_head_whole() -> None:
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(40, 8, 8, num_layers=1, dropout=0.0, tie=True, embedding_dropout=0.5))
    tokens = torch.arange(40).view(40, 1)
    model.train()
    (model.features(tokens, model.init_state(1))[0].sum()).backward()
    rows = model.encoder.weight.grad.abs().sum(1)
    dropped = (rows == 0).sum().item()
    assert 5 < dropped < 35  # rows of dropped words get no gradient through the lookup
    model.zero_grad()
    logits, _ = model(tokens, model.init_state(1))
    logits.sum().backward()
    assert (model.encoder.weight.grad.abs().sum(1) > 0).all()  # the tied output layer scores every word


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_counts_match_closed_form(tie: bool) -> None:
    V, d = 10_000, 200
    model = LSTMLanguageModel(LSTMConfig(V, d, d, num_layers=2, tie=tie))
    s = tying.summary(model)
    assert _lstm_params(2, d, d) == 2 * 4 * (d * d + d * d + d + d)
    unique = V * d + _lstm_params(2, d, d) + (0 if tie else V * d) + V
    assert s.unique_parameters == unique
    assert s.total_parameters == V * d + _lstm_params(2, d, d) + V * d + V  # the tied matrix counted twice
    assert sum(p.numel() for p in model.parameters()) == unique


def test_tied_decoder_is_the_embedding_parameter() -> None:
    model = LSTMLanguageModel(LSTMConfig(50, 16, 16, tie=True))
    assert model.decoder.weight is model.encoder.weight
    assert [(t.source, t.target) for t in tying.get_spec(model).ties] == [("encoder.weight", "decoder.weight")]
    tying.verify(model)
    untied = LSTMLanguageModel(LSTMConfig(50, 16, 16, tie=False))
    assert untied.decoder.weight is not untied.encoder.weight and not tying.get_spec(untied).ties


def test_tie_with_unequal_sizes_names_both_and_the_fix() -> None:
    with pytest.raises(
        TieError,
        match=r"reads 300 features \(hidden_size=300, last_layer_size=None\) but embedding_size=200; set "
        r"hidden_size == embedding_size, or projection=True .* or last_layer_size=embedding_size \(AWD-LSTM\)",
    ):
        LSTMLanguageModel(LSTMConfig(100, embedding_size=200, hidden_size=300, tie=True))
    LSTMLanguageModel(LSTMConfig(100, embedding_size=200, hidden_size=300, tie=False))  # fine untied


def test_tied_gradient_is_the_sum_of_both_uses() -> None:
    """d loss / d U for U shared = (gradient through the embedding) + (gradient through the output layer)."""
    torch.manual_seed(0)
    cfg = LSTMConfig(30, 8, 8, num_layers=2, dropout=0.0)
    tied = LSTMLanguageModel(LSTMConfig(30, 8, 8, num_layers=2, dropout=0.0, tie=True))
    untied = LSTMLanguageModel(cfg)
    untied.load_state_dict(tied.state_dict())  # same values, decoder.weight a separate copy of encoder.weight
    assert untied.decoder.weight is not untied.encoder.weight
    tokens = torch.randint(0, 30, (7, 3))
    for m in (tied, untied):
        logits, _ = m(tokens[:-1], m.init_state(3))
        F.cross_entropy(logits.reshape(-1, 30), tokens[1:].reshape(-1)).backward()
    assert torch.allclose(tied.encoder.weight.grad, untied.encoder.weight.grad + untied.decoder.weight.grad, atol=1e-6)
    assert torch.allclose(tied.rnns[1].weight_hh_l0.grad, untied.rnns[1].weight_hh_l0.grad, atol=1e-6)


def test_shapes_and_features_plus_logits_equal_forward() -> None:
    model = LSTMLanguageModel(LSTMConfig(40, 12, 12, num_layers=3, tie=True)).eval()
    state = model.init_state(5)
    assert [tuple(t.shape for t in layer) for layer in state] == [((1, 5, 12), (1, 5, 12))] * 3
    tokens = torch.randint(0, 40, (9, 5))
    logits, new_state = model(tokens, state)
    assert logits.shape == (9, 5, 40) and len(new_state) == 3 and new_state[2][0].shape == (1, 5, 12)
    hidden, _ = model.features(tokens, state)
    assert hidden.shape == (9, 5, 12)
    assert torch.equal(model.logits(hidden), logits)


def test_init_is_uniform_and_biases_zero() -> None:
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(500, 32, 32, init_range=0.1))
    for name, p in model.named_parameters():
        if p.dim() > 1:
            assert p.abs().max() <= 0.1 and p.abs().max() > 0.09, name
        else:
            assert not p.any(), name


def test_uniform_output_biases_draw_b_and_c_after_the_same_weights() -> None:
    cfg = LSTMConfig(500, 32, 32, tie=True, projection=True, init_range=0.1)
    torch.manual_seed(0)
    zero = LSTMLanguageModel(cfg)
    torch.manual_seed(0)
    tf_like = LSTMLanguageModel(replace(cfg, uniform_output_biases=True))
    assert tf_like.projection is not None and zero.projection is not None
    for b in (tf_like.decoder.bias, tf_like.projection.bias):
        assert b.abs().max() <= 0.1 and b.abs().max() > 0.09
    others = {k: v for k, v in tf_like.state_dict().items() if k not in ("decoder.bias", "projection.bias")}
    for name, value in others.items():  # the weights and the LSTM biases (zero) as without the option
        assert torch.equal(value, zero.state_dict()[name]), name


def test_tied_checkpoint_round_trip_stores_the_matrix_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = LSTMConfig(200, 16, 16, tie=True)
    model = LSTMLanguageModel(cfg)
    tying.save(model, tmp_path / "m.safetensors")
    torch.manual_seed(1)
    fresh = LSTMLanguageModel(cfg)  # other values
    tying.load(fresh, tmp_path / "m.safetensors")
    assert fresh.decoder.weight is fresh.encoder.weight
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    info = tying.read_checkpoint(tmp_path / "m.safetensors")
    assert sum(t.nbytes for t in info.tensors) == tying.summary(fresh).unique_bytes
