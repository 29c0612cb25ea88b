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

The fused tied output + cross-entropy (``TiedOutput.loss``) compiles with ``fullgraph=True``: alone
(with ``aot_eager``, which checks the tracing, and with inductor, whose CPU lowering of the eager
path's oneDNN product failed), and in a training step of the tied LSTM LM, which is one graph with
dynamo's experimental ``allow_rnn`` and otherwise breaks at ``nn.LSTM`` only.
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


def _head_and_batch() -> tuple[nn.ModuleDict, torch.Tensor, torch.Tensor]:
    """An embedding tied to a fused TiedOutput; targets with ignored positions."""
    from tying.nn import TiedOutput

    torch.manual_seed(0)
    model = nn.ModuleDict({"embed": nn.Embedding(50, 8), "out": TiedOutput(8, 50, chunk_size=16)})
    tying.tie(model, "embed.weight", "out.weight")
    tokens, target = torch.randint(0, 50, (6, 7)), torch.randint(0, 50, (6, 7))
    target[:, ::4] = -100
    return model, tokens, target


def _head_loss(model: nn.Module, tokens: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    loss = model["out"].loss(torch.tanh(model["embed"](tokens)), target, reduction=reduction, label_smoothing=0.1)
    return loss if reduction != "none" else (loss * torch.linspace(0, 1, loss.numel()).reshape(loss.shape)).sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_loss_traces_into_one_graph_without_a_host_sync(reduction: str) -> None:
    # fullgraph=True raises on any graph break: the count of non-ignored targets was int()-ed.
    model, tokens, target = _head_and_batch()
    compiled = torch.compile(_head_loss, backend="aot_eager", fullgraph=True)
    loss = compiled(model, tokens, target, reduction)
    (grad,) = torch.autograd.grad(loss, [model["embed"].weight])
    expected = _head_loss(model, tokens, target, reduction)
    torch.testing.assert_close(loss, expected, **TOLERANCE)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, [model["embed"].weight])[0], **TOLERANCE)


@pytest.mark.slow
def test_compiled_training_step_of_the_fused_tied_head_matches_eager() -> None:
    # inductor, float32 on CPU: the eager path's oneDNN inner product failed inductor's lowering
    # (InductorError in mkldnn._linear_pointwise, whose lowering wants a frozen constant weight).
    model, tokens, target = _head_and_batch()
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(_head_loss, fullgraph=True)
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (model, compiled_model)]
    for _ in range(2):
        losses = []
        for m, fn, opt in ((model, _head_loss, opts[0]), (compiled_model, compiled, opts[1])):
            opt.zero_grad()
            losses.append(fn(m, tokens, target))
            losses[-1].backward()
            opt.step()
        torch.testing.assert_close(losses[1], losses[0], **TOLERANCE)
    assert compiled_model["out"].weight is compiled_model["embed"].weight
    _assert_close(dict(compiled_model.named_parameters()), dict(model.named_parameters()))


def _lstm_step_loss(model: nn.Module, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from tying.training.losses import fused_lm_loss

    return fused_lm_loss(model, tokens, target, model.init_state(tokens.shape[1]))[0]


@pytest.mark.slow
def test_compiled_lstm_lm_step_with_the_fused_loss_matches_eager() -> None:
    from tying.models import LSTMConfig, LSTMLanguageModel

    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=40, embedding_size=8, hidden_size=8, num_layers=2, dropout=0.0, tie=True))
    tokens, target = torch.randint(0, 40, (5, 2)), torch.randint(0, 40, (5, 2))
    # By default dynamo breaks the graph at nn.LSTM, and only there (the fused loss adds no break).
    explained = torch._dynamo.explain(_lstm_step_loss)(model, tokens, target)
    assert explained.graph_break_count == 1
    assert "Dynamo does not support RNN, GRU, or LSTM" in explained.break_reasons[0].reason
    # With dynamo's experimental RNN support the whole step is one graph.
    compiled_model = copy.deepcopy(model)
    opts = [torch.optim.SGD(m.parameters(), lr=1.0) for m in (model, compiled_model)]
    with torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(_lstm_step_loss, fullgraph=True)
        for _ in range(2):
            losses = []
            for m, fn, opt in ((model, _lstm_step_loss, opts[0]), (compiled_model, compiled, opts[1])):
                opt.zero_grad()
                losses.append(fn(m, tokens, target))
                losses[-1].backward()
                opt.step()
            torch.testing.assert_close(losses[1], losses[0], **TOLERANCE)
    assert tying.verify(compiled_model).ok
    _assert_close(dict(compiled_model.named_parameters()), dict(model.named_parameters()))
