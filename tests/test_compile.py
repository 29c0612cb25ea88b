"""torch.compile on tied models (inductor, CPU): the same loss and gradients as eager for every tie
kind, ties intact after compiling and after optimizer steps, and checkpoints through the
``OptimizedModule`` wrapper.

``torch.compile`` returns an ``OptimizedModule`` that holds the model as ``_orig_mod``: the very
same Parameters, under paths prefixed ``_orig_mod.``, without the model's tie spec. tying's
functions unwrap it, so a compiled model is verified, summarised, saved and loaded under the
model's own paths (and its checkpoints are interchangeable with the eager model's).

Tolerance: inductor fuses the elementwise ops around the matrix products, which may round
differently from eager, so values are compared with ``rtol=1e-5, atol=1e-6`` (float32); the
largest differences measured on these models are 2.4e-7 in a loss, 2.4e-7 in a gradient and 5.0e-7
in a parameter after three steps (a few float32 ulp). Each case compiles one forward and one
backward graph (a few seconds on CPU; the first compile of a process takes longer).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tying

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
STEPS = 3


@dataclass
class Case:
    build: Callable[[object], nn.Module]  # (models fixture) -> tied model
    batch: Callable[[], tuple[torch.Tensor, ...]]
    loss: Callable[..., torch.Tensor]
    tied: Callable[[nn.Module], bool]  # the tie as object identity, read through the compiled wrapper


def _cross_layer(models) -> nn.Module:
    m = models.Stack(n=3, dim=4)
    tying.tie(m, "layers.0.weight", "layers.1.weight", "layers.2.weight")
    return m


def _three_way(models) -> nn.Module:
    m = models.Seq2Seq(vocab=9, dim=4)
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    return m


def _ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


CASES = {
    "shared": Case(
        lambda models: models.tied_lm(vocab=11, dim=4),
        lambda: (torch.randint(0, 11, (4, 5)), torch.randint(0, 11, (4, 5))),
        lambda m, idx, target: _ce(m(idx), target),
        lambda m: m.head.weight is m.embed.weight,
    ),
    "transposed": Case(
        lambda models: models.tied_ae(d=6, h=3),
        lambda: (torch.randn(4, 6),),
        lambda m, x: F.mse_loss(m(x), x),
        lambda m: m.dec.parametrizations.weight.original is m.enc.weight,
    ),
    "cross_layer": Case(
        _cross_layer,
        lambda: (torch.randn(4, 4), torch.randn(4, 4)),
        lambda m, x, y: F.mse_loss(m(x), y),
        lambda m: m.layers[0].weight is m.layers[1].weight is m.layers[2].weight,
    ),
    "three_way": Case(
        _three_way,
        lambda: (torch.randint(0, 9, (4, 5)), torch.randint(0, 9, (4, 3)), torch.randint(0, 9, (4, 3))),
        lambda m, src, tgt, y: _ce(m(src, tgt), y),
        lambda m: m.encoder.embed.weight is m.decoder.embed.weight is m.decoder.out.weight,
    ),
}


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(actual[k], expected[k], **TOLERANCE, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CASES))
def test_compiled_tied_model_matches_eager_keeps_ties_and_checkpoints(models, kind: str, tmp_path) -> None:
    case = CASES[kind]
    torch.manual_seed(0)
    eager = case.build(models)
    compiled = torch.compile(copy.deepcopy(eager))  # deepcopy keeps the ties and the spec
    assert case.tied(compiled) and tying.verify(compiled).ok

    torch.manual_seed(1)
    batch = case.batch()
    opts = {m: torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9) for m in (eager, compiled)}
    for step in range(STEPS):
        losses = {}
        for m, opt in opts.items():
            opt.zero_grad()
            losses[m] = case.loss(m, *batch)
            losses[m].backward()
        torch.testing.assert_close(losses[compiled], losses[eager], **TOLERANCE)
        # One gradient per tie group (the sum over its uses), under the model's own names.
        _assert_close(_grads(compiled._orig_mod), _grads(eager))
        for opt in opts.values():
            opt.step()
        assert case.tied(compiled), f"tie lost after step {step}"
    _assert_close(dict(compiled._orig_mod.named_parameters()), dict(eager.named_parameters()))
    assert tying.verify(compiled).ok
    assert [g.paths for g in tying.find_ties(compiled)] == [g.paths for g in tying.find_ties(eager)]

    # The compiled model's checkpoint is the eager model's: no "_orig_mod." in any name.
    path = tying.save(compiled, tmp_path / "compiled.safetensors")
    info = tying.read_checkpoint(path)
    assert not any(t.name.startswith("_orig_mod.") for t in info.tensors) and info.spec == tying.get_spec(eager)
    fresh = copy.deepcopy(eager)
    tying.load(fresh, path)
    _assert_close(dict(fresh.named_parameters()), dict(compiled._orig_mod.named_parameters()))
    # Loading into the compiled model writes in place: the compiled code sees the new values.
    torch.manual_seed(2)
    other = case.build(models)
    tying.save(other, tmp_path / "other.safetensors")
    tying.load(compiled, tmp_path / "other.safetensors")
    assert case.tied(compiled)
    torch.testing.assert_close(case.loss(compiled, *batch), case.loss(other, *batch), **TOLERANCE)


def test_tying_sees_through_the_compile_wrapper(models) -> None:
    model = models.tied_lm()
    compiled = torch.compile(model)  # compiles lazily, on the first call: nothing is compiled here
    assert type(compiled).__name__ == "OptimizedModule" and compiled._orig_mod is model
    assert "_orig_mod.embed.weight" in compiled.state_dict()
    assert tying.get_spec(compiled) == tying.get_spec(model)
    assert tying.find_ties(compiled) == tying.find_ties(model)
    assert str(tying.summary(compiled)) == str(tying.summary(model))
    tying.untie(compiled, "head.weight")
    assert model.head.weight is not model.embed.weight and not tying.get_spec(model).ties
    tying.tie(compiled, "embed.weight", "head.weight")
    assert model.head.weight is model.embed.weight and tying.verify(compiled).ok
