"""LSTMLanguageModel: parameter counts, the tie, gradients, shapes, init and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tying
from tying.errors import TieError
from tying.models import LSTMConfig, LSTMLanguageModel


def _lstm_params(layers: int, d: int, h: int) -> int:
    # Per layer: W_ih (4h x in), W_hh (4h x h), b_ih and b_hh (4h each); layer 0 reads d, others h.
    return sum(4 * h * ((d if i == 0 else h) + h + 2) for i in range(layers))


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
    with pytest.raises(TieError, match=r"hidden_size=300 but embedding_size=200.*set hidden_size == embedding_size"):
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
    assert torch.allclose(tied.rnn.weight_hh_l1.grad, untied.rnn.weight_hh_l1.grad, atol=1e-6)


def test_shapes_and_features_plus_logits_equal_forward() -> None:
    model = LSTMLanguageModel(LSTMConfig(40, 12, 12, num_layers=3, tie=True)).eval()
    state = model.init_state(5)
    assert [s.shape for s in state] == [(3, 5, 12), (3, 5, 12)]
    tokens = torch.randint(0, 40, (9, 5))
    logits, (h, c) = model(tokens, state)
    assert logits.shape == (9, 5, 40) and h.shape == c.shape == (3, 5, 12)
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
