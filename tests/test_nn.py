"""tying.nn.JointOutput (Pappas et al. 2018): the logits against the formula, the fused loss and
its gradients against the naive path, and the reduction to plain tying."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tying
from tying.nn import JointOutput


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity"])
def test_logits_are_the_joint_space_product(activation: str) -> None:
    torch.manual_seed(0)
    out = JointOutput(6, 11, 5, embedding_size=4, activation=activation)
    g = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda x: x}[activation]
    h = torch.randn(3, 2, 6)
    E, U, bu, V, bv = out.weight, out.word.weight.T, out.word.bias, out.state.weight, out.state.bias
    expected = torch.einsum("wj,btj->btw", g(E @ U + bu), g(h @ V.T + bv)) + out.bias
    torch.testing.assert_close(out(h), expected, rtol=1e-5, atol=1e-6)


def test_fused_loss_and_gradients_equal_the_naive_cross_entropy() -> None:
    torch.manual_seed(0)
    out = JointOutput(6, 11, 5)
    nn.init.normal_(out.bias)
    h = torch.randn(7, 6, requires_grad=True)
    target = torch.tensor([0, 3, 10, -100, 4, 4, 1])
    fused = out.loss(h, target, label_smoothing=0.2)
    grads = torch.autograd.grad(fused, [h, *out.parameters()])
    naive = F.cross_entropy(out(h), target, label_smoothing=0.2)
    expected = torch.autograd.grad(naive, [h, *out.parameters()])
    torch.testing.assert_close(fused, naive, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_identity_projections_reduce_to_plain_tying() -> None:
    torch.manual_seed(0)
    out = JointOutput(4, 9, 4, activation="identity")
    with torch.no_grad():
        out.word.weight.copy_(torch.eye(4)), out.state.weight.copy_(torch.eye(4))
        out.word.bias.zero_(), out.state.bias.zero_()
    h = torch.randn(5, 4)
    torch.testing.assert_close(out(h), F.linear(h, out.weight, out.bias))


def test_weight_ties_to_an_embedding() -> None:
    model = nn.Module()
    model.embed, model.out = nn.Embedding(9, 4), JointOutput(4, 9, 3)
    tying.tie(model, "embed.weight", "out.weight")
    assert model.out.weight is model.embed.weight
    out = model.out(torch.randn(2, 4)).sum() + model.embed(torch.tensor([1])).sum()
    out.backward()
    assert model.embed.weight.grad is not None and model.embed.weight.grad[1].abs().sum() > 0


def test_unknown_activation_is_named() -> None:
    with pytest.raises(ValueError, match=r"JointOutput activation must be one of \['identity', 'relu', 'sigmoid', 'tanh'\], got 'gelu'"):
        JointOutput(4, 9, 3, activation="gelu")  # type: ignore[arg-type]
