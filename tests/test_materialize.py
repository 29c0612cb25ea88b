"""materialize: a meta-built model is allocated once per shared tensor, keeps its ties, each tie
group holds what its source's module initialised, and the values equal an eager build's."""

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


class _AE(nn.Module):
    def __init__(self, dec_first: bool) -> None:
        super().__init__()
        if dec_first:
            self.dec = nn.Linear(3, 7, bias=False)
        self.enc = nn.Linear(7, 3, bias=False)
        if not dec_first:
            self.dec = nn.Linear(3, 7, bias=False)


_EAGER_CASES = {
    "embed source, registered first": ("TinyLM", (("embed.weight", "head.weight"),), ()),
    "embed source, registered last": ("HeadFirstLM", (("embed.weight", "head.weight"),), ()),
    "linear source, registered last": ("TinyLM", (("head.weight", "embed.weight"),), ()),
    "linear source, registered first": ("HeadFirstLM", (("head.weight", "embed.weight"),), ()),
    "transposed": ("AutoEncoder", (), (("enc.weight", "dec.weight"),)),
    "transposed, target first": ("AE dec first", (), (("enc.weight", "dec.weight"),)),
    "transposed, source first": ("AE enc first", (), (("enc.weight", "dec.weight"),)),
}


@pytest.mark.parametrize("case", list(_EAGER_CASES))
def test_seeded_init_equals_an_eager_build(models, case) -> None:
    """Meta build + materialize gives exactly what an eager build (then tie) gives under the same
    seed, whichever module registers first: the draws an eager build makes for a tied target
    before the tie replaces it happen too (into scratch memory), and the tied tensor keeps the
    source module's values, drawn once."""
    name, ties, transposed = _EAGER_CASES[case]
    factory = {"AE dec first": lambda: _AE(True), "AE enc first": lambda: _AE(False)}.get(name) or getattr(models, name)
    torch.manual_seed(1234)
    eager = factory()
    for source, *targets in ties:
        tying.tie(eager, source, *targets)
    for source, target in transposed:
        tying.tie_transposed(eager, source, target)
    after_eager = torch.get_rng_state()
    m = _meta(factory, *ties, transposed=transposed)
    torch.manual_seed(1234)
    tying.materialize(m, "cpu")
    assert torch.equal(torch.get_rng_state(), after_eager)  # the same draws, in the same order
    want = eager.state_dict()
    got = m.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    tying.verify(m)


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
    # Every registration is visited (the others hold scratch memory, as in an eager build), but the
    # tied tensor holds what its source's visit wrote.
    assert sorted(seen) == [("decoder.embed", "weight"), ("decoder.out", "weight"), ("encoder.embed", "weight")]
    assert torch.equal(m.decoder.out.weight, torch.full((9, 4), float(seen.index(("decoder.out", "weight")) + 1)))
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


def test_module_registered_twice_is_initialised_like_reset_parameters() -> None:
    """accelerate's own tied test model, nn.Sequential(l, l): one slot under two paths. It used to
    be left uninitialised (values up to 1e36 or NaN): the owner's slot was hidden as well."""
    with torch.device("meta"):
        lin = nn.Linear(10, 10)
        m = nn.Sequential(lin, lin)
    torch.manual_seed(7)
    tying.materialize(m, "cpu")
    torch.manual_seed(7)
    ref = nn.Linear(10, 10)
    assert m[0] is m[1] and torch.equal(m[0].weight, ref.weight) and torch.equal(m[0].bias, ref.bias)
    assert m[0].weight.abs().max() <= 1 / math.sqrt(10)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_project_models_meta_build_equals_eager_build(kind) -> None:
    """A parent's own initialisation runs after its children's (it used to run before and be
    overwritten: wte std ~1.0 instead of 0.02, LSTM embedding values up to 4.2 instead of 0.1)."""
    from tying.models import LSTMConfig, LSTMLanguageModel, TransformerConfig, TransformerLanguageModel

    if kind == "lstm":
        cls, config = LSTMLanguageModel, LSTMConfig(vocab_size=50, embedding_size=16, hidden_size=16, num_layers=2, tie=True)
    else:
        cls, config = TransformerLanguageModel, TransformerConfig(vocab_size=50, embedding_size=16, num_layers=2, num_heads=2, context_size=8)
    torch.manual_seed(0)
    eager = cls(config)
    with torch.device("meta"):
        model = cls(config)
    torch.manual_seed(0)
    tying.materialize(model, "cpu")
    for (key, want), (key2, got) in zip(eager.state_dict().items(), model.state_dict().items(), strict=True):
        assert key == key2 and torch.equal(want, got), key
    embedding = model.encoder.weight if kind == "lstm" else model.wte.weight
    embedding = embedding.detach()
    assert embedding.abs().max() <= 0.1 if kind == "lstm" else 0.015 < float(embedding.std()) < 0.025
    tying.verify(model)


class _WithTable(nn.Module):
    """A module whose __init__ computes a non-persistent buffer (a sinusoidal table) that its
    reset_parameters does not re-create."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.embed.weight  # tied by assignment in __init__, as nanoGPT does
        self.register_buffer("table", torch.arange(8.0).sin(), persistent=False)
        self.register_buffer("count", torch.tensor([3.0]))


def test_non_persistent_meta_buffer_nothing_recreates_is_an_error() -> None:
    with torch.device("meta"):
        m = _WithTable()
    with pytest.raises(tying.TieError, match=r"non-persistent buffers 'table' were built on the meta device .*tying\.empty_parameters\(\)"):
        tying.materialize(m, "cpu")
    with torch.device("meta"):
        m = _WithTable()
    with pytest.raises(tying.TieError, match=r"'table'"):
        tying.materialize(m, "cpu", init=False)  # a checkpoint cannot fill it either


def test_empty_parameters_keeps_buffers_and_assignment_ties() -> None:
    with tying.empty_parameters():
        m = _WithTable()
    assert all(p.device.type == "meta" for p in m.parameters())
    assert m.head.weight is m.embed.weight  # accelerate's init_empty_weights makes two objects here
    assert torch.equal(m.table, torch.arange(8.0).sin()) and torch.equal(m.count, torch.tensor([3.0]))
    torch.manual_seed(4)
    tying.materialize(m, "cpu")
    _no_meta(m)
    assert m.head.weight is m.embed.weight
    assert torch.equal(m.table, torch.arange(8.0).sin()) and torch.equal(m.count, torch.tensor([3.0]))
    torch.manual_seed(4)
    assert torch.equal(m.embed.weight, _WithTable().embed.weight)
    # Outside the block, parameters are real again.
    assert nn.Linear(2, 2).weight.device.type == "cpu"
