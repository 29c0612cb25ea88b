"""materialize: a meta-built model is allocated once per shared tensor, keeps its ties, and each tie
group is initialised exactly once, through its source's module, whatever the module order."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import tying


def _meta(factory, *ties, transposed=()):
    with torch.device("meta"):
        m = factory()
    for source, *targets in ties:
        tying.tie(m, source, *targets)
    for source, target in transposed:
        tying.tie_transposed(m, source, target)
    return m


def _no_meta(model: nn.Module) -> None:
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers()]:
        assert t.device.type == "cpu", name


def test_materialize_keeps_identity_ties(models) -> None:
    m = _meta(models.TinyLM, ("embed.weight", "head.weight"))
    assert tying.materialize(m, "cpu") is m
    _no_meta(m)
    assert m.head.weight is m.embed.weight
    assert isinstance(m.embed.weight, nn.Parameter) and m.embed.weight.requires_grad
    tying.verify(m)


def test_materialize_keeps_three_way_and_undeclared_sharing(models) -> None:
    m = _meta(models.Seq2Seq, ("encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight"))
    tying.materialize(m, torch.device("cpu"))
    assert m.encoder.embed.weight is m.decoder.embed.weight is m.decoder.out.weight
    with torch.device("meta"):
        hand = models.TinyLM()
    hand.head.weight = hand.embed.weight  # undeclared: still one object, one tensor
    tying.materialize(hand, "cpu")
    assert hand.head.weight is hand.embed.weight
    _no_meta(hand)


def test_materialize_keeps_transposed_tie(models) -> None:
    ae = _meta(models.AutoEncoder, transposed=[("enc.weight", "dec.weight")])
    tying.materialize(ae, "cpu")
    _no_meta(ae)
    assert ae.dec.parametrizations.weight.original is ae.enc.weight
    assert torch.equal(ae.dec.weight, ae.enc.weight.T)
    tying.verify(ae)


def test_materialize_allocates_buffers() -> None:
    with torch.device("meta"):
        m = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 3))
    tying.tie(m, "0.weight", "2.weight")
    tying.materialize(m, "cpu")
    _no_meta(m)
    assert m[2].weight is m[0].weight
    # BatchNorm.reset_parameters re-creates the running statistics.
    assert torch.equal(m[1].running_mean, torch.zeros(3))
    assert torch.equal(m[1].running_var, torch.ones(3))
    assert m[1].num_batches_tracked.item() == 0
    m.train()(torch.randn(4, 3))  # usable


def test_materialize_init_false_allocates_without_initialising(models, tmp_path) -> None:
    m = _meta(models.TinyLM, ("embed.weight", "head.weight"))
    tying.materialize(m, "cpu", init=False)
    _no_meta(m)
    assert m.head.weight is m.embed.weight
    # The usual next step: load a checkpoint into it.
    src = models.TinyLM()
    tying.tie(src, "embed.weight", "head.weight")
    tying.load(m, tying.save(src, tmp_path / "lm.safetensors"))
    assert torch.equal(m.embed.weight, src.embed.weight) and m.head.weight is m.embed.weight


def _embedding_reset(vocab: int, dim: int) -> torch.Tensor:
    """What nn.Embedding.reset_parameters alone draws (standard normal)."""
    return torch.empty(vocab, dim).normal_()


def _linear_reset(out: int, inp: int) -> torch.Tensor:
    """What nn.Linear.reset_parameters alone draws for the weight."""
    w = torch.empty(out, inp)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    return w


@pytest.mark.parametrize("order", ["TinyLM", "HeadFirstLM"])
def test_seeded_init_equals_source_module_alone_any_order(models, order) -> None:
    """The tied weight is what the source's reset_parameters alone draws, whether the source module
    is initialised before or after the target's (the target's initialiser never touches it)."""
    factory = getattr(models, order)
    m = _meta(lambda: factory(vocab=13, dim=5), ("embed.weight", "head.weight"))
    torch.manual_seed(1234)
    tying.materialize(m, "cpu")
    torch.manual_seed(1234)
    expected = _embedding_reset(13, 5)
    assert torch.equal(m.embed.weight, expected)
    assert m.head.weight is m.embed.weight


@pytest.mark.parametrize("order", ["TinyLM", "HeadFirstLM"])
def test_seeded_init_with_linear_source(models, order) -> None:
    factory = getattr(models, order)
    m = _meta(lambda: factory(vocab=13, dim=5), ("head.weight", "embed.weight"))
    torch.manual_seed(99)
    tying.materialize(m, "cpu")
    torch.manual_seed(99)
    if order == "TinyLM":
        # embed's reset is skipped (it reads a meta placeholder); proj draws before head.
        proj = nn.Linear(5, 5)
        assert torch.equal(m.proj.weight, proj.weight) and torch.equal(m.proj.bias, proj.bias)
    assert torch.equal(m.head.weight, _linear_reset(13, 5))
    assert m.embed.weight is m.head.weight


@pytest.mark.parametrize("dec_first", [False, True])
def test_seeded_transposed_init_any_order(dec_first) -> None:
    class AE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if dec_first:
                self.dec = nn.Linear(3, 7, bias=False)
            self.enc = nn.Linear(7, 3, bias=False)
            if not dec_first:
                self.dec = nn.Linear(3, 7, bias=False)

    ae = _meta(AE, transposed=[("enc.weight", "dec.weight")])
    torch.manual_seed(3)
    tying.materialize(ae, "cpu")
    torch.manual_seed(3)
    assert torch.equal(ae.enc.weight, _linear_reset(3, 7))
    assert ae.dec.parametrizations.weight.original is ae.enc.weight


def test_seeded_transposed_init_equals_source_alone(models) -> None:
    ae = _meta(lambda: models.AutoEncoder(d=7, h=3), transposed=[("enc.weight", "dec.weight")])
    torch.manual_seed(5)
    tying.materialize(ae, "cpu")
    torch.manual_seed(5)
    ref = nn.Linear(7, 3)
    assert torch.equal(ae.enc.weight, ref.weight)
    assert torch.equal(ae.enc.bias, ref.bias)
    # dec.bias is then drawn by dec's own reset (fan_in from the transposed weight's shape, 3).
    bound = 1 / math.sqrt(3)
    assert ae.dec.bias.abs().max() <= bound
    assert torch.equal(ae.dec.weight, ref.weight.T)


def test_each_tie_group_initialised_once_through_its_source(models) -> None:
    m = _meta(
        models.Seq2Seq,
        ("decoder.out.weight", "encoder.embed.weight", "decoder.embed.weight"),  # source registered last
    )
    seen: list[tuple[str, str]] = []
    names = {mod: name for name, mod in m.named_modules()}

    def init(module: nn.Module) -> None:
        for pname, p in module.named_parameters(recurse=False):
            if p.device.type != "meta":
                seen.append((names[module], pname))
                with torch.no_grad():
                    p.fill_(len(seen))

    tying.materialize(m, "cpu", init=init)
    assert seen == [("decoder.out", "weight")]
    assert torch.equal(m.decoder.out.weight, torch.full((9, 4), 1.0))
    assert m.encoder.embed.weight is m.decoder.out.weight is m.decoder.embed.weight


def test_init_callable_sees_every_module_and_placeholders_are_restored(models) -> None:
    m = _meta(models.TinyLM, ("embed.weight", "head.weight"))
    visited = []

    def init(module: nn.Module) -> None:
        visited.append(type(module).__name__)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)

    tying.materialize(m, "cpu", init=init)
    assert sorted(visited) == sorted(type(x).__name__ for x in m.modules())
    assert m.head.weight is m.embed.weight  # the placeholder is gone after init
    _no_meta(m)


def test_to_empty_alone_breaks_ties_materialize_does_not(models) -> None:
    a = _meta(models.TinyLM, ("embed.weight", "head.weight"))
    a.to_empty(device="cpu")
    assert a.head.weight is not a.embed.weight
    b = _meta(models.TinyLM, ("embed.weight", "head.weight"))
    tying.materialize(b, "cpu")
    assert b.head.weight is b.embed.weight
