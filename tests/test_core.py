"""tie, tie_transposed, untie, retie, verify and the load_state_dict hooks: object identity of tied
parameters after every operation, exact gradients, and every error message."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tying
from tying import Tie, TieError, TieVerificationError

# --------------------------------------------------------------------------- helpers


def _assert_transposed_tie(ae: nn.Module, source: str = "enc", target: str = "dec") -> None:
    src, tgt = ae.get_submodule(source), ae.get_submodule(target)
    assert tgt.parametrizations.weight.original is src.weight
    assert torch.equal(tgt.weight, src.weight.T)
    assert tgt.weight.data_ptr() == src.weight.data_ptr()  # a view, not a copy


# --------------------------------------------------------------------------- tie


def test_tie_makes_target_the_source_object_and_keeps_source_values(models) -> None:
    m = models.TinyLM()
    src_values = m.embed.weight.detach().clone()
    src_obj = m.embed.weight
    tying.tie(m, "embed.weight", "head.weight")
    assert m.head.weight is m.embed.weight is src_obj
    assert torch.equal(m.embed.weight, src_values)
    assert tying.get_spec(m).ties == [Tie("embed.weight", "head.weight")]
    assert tying.verify(m).ok


def test_tie_three_way_in_one_call(models) -> None:
    m = models.Seq2Seq()
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    assert m.decoder.embed.weight is m.encoder.embed.weight
    assert m.decoder.out.weight is m.encoder.embed.weight
    assert [t.target for t in tying.get_spec(m).ties] == ["decoder.embed.weight", "decoder.out.weight"]
    assert len(list(m.parameters())) == 1
    tying.verify(m)


def test_tie_modulelist_index_paths(models) -> None:
    m = models.Stack(n=4)
    tying.tie(m, "layers.0.weight", "layers.1.weight", "layers.3.weight")
    tying.tie(m, "layers.0.bias", "layers.2.bias")
    assert m.layers[1].weight is m.layers[0].weight
    assert m.layers[3].weight is m.layers[0].weight
    assert m.layers[2].weight is not m.layers[0].weight
    assert m.layers[2].bias is m.layers[0].bias
    tying.verify(m)


def test_tie_redeclared_is_a_noop(models) -> None:
    m = models.tied_lm()
    tying.tie(m, "embed.weight", "head.weight")
    assert tying.get_spec(m).ties == [Tie("embed.weight", "head.weight")]
    ae = models.tied_ae()
    tying.tie_transposed(ae, "enc.weight", "dec.weight")
    assert len(tying.get_spec(ae).ties) == 1
    _assert_transposed_tie(ae)


def test_tie_from_a_target_resolves_to_its_root(models) -> None:
    m = models.Stack(n=3)
    tying.tie(m, "layers.0.weight", "layers.1.weight")
    tying.tie(m, "layers.1.weight", "layers.2.weight")  # chain resolves to layers.0.weight
    assert tying.get_spec(m).ties == [Tie("layers.0.weight", "layers.1.weight"), Tie("layers.0.weight", "layers.2.weight")]
    assert m.layers[2].weight is m.layers[0].weight


def test_tied_parameter_is_counted_once_and_has_one_optimizer_state(models) -> None:
    m = models.tied_lm()
    names = [n for n, _ in m.named_parameters()]
    assert "head.weight" not in names
    assert len(list(m.parameters())) == 3  # embed.weight, proj.weight, proj.bias
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m(torch.tensor([[1, 2, 3]])).sum().backward()
    opt.step()
    assert len(opt.state) == 3
    assert sum(1 for p in opt.state if p is m.embed.weight) == 1
    assert m.head.weight is m.embed.weight
    ae = models.tied_ae()
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
    ae(torch.randn(2, 6)).sum().backward()
    opt.step()
    assert len(opt.state) == 3 and ae.enc.weight in opt.state  # enc.weight, enc.bias, dec.bias
    _assert_transposed_tie(ae)


def test_gradient_of_shared_weight_is_sum_of_both_paths(models) -> None:
    torch.manual_seed(0)
    m = models.tied_lm(vocab=13, dim=5).double()
    untied = copy.deepcopy(m)
    tying.untie(untied, "head.weight")
    assert untied.head.weight is not untied.embed.weight
    idx = torch.tensor([[0, 3, 7, 3], [12, 1, 1, 5]])
    target = torch.tensor([[3, 7, 3, 2], [1, 1, 5, 0]])
    for model in (m, untied):
        F.cross_entropy(model(idx).flatten(0, 1), target.flatten()).backward()
    expected = untied.embed.weight.grad + untied.head.weight.grad
    assert untied.embed.weight.grad.abs().sum() > 0 and untied.head.weight.grad.abs().sum() > 0
    assert torch.equal(m.embed.weight.grad, expected)  # exact: one accumulation of the same two terms
    assert m.head.weight.grad is m.embed.weight.grad
    assert torch.equal(m.proj.weight.grad, untied.proj.weight.grad)


# --------------------------------------------------------------------------- transposed ties


def test_tie_transposed_reads_the_source_transposed(models) -> None:
    ae = models.AutoEncoder(d=6, h=3)
    enc = ae.enc.weight
    values = enc.detach().clone()
    tying.tie_transposed(ae, "enc.weight", "dec.weight")
    assert ae.enc.weight is enc and torch.equal(ae.enc.weight, values)
    _assert_transposed_tie(ae)
    assert ae.dec.weight.shape == (6, 3)
    assert tying.get_spec(ae).ties == [Tie("enc.weight", "dec.weight", "transpose")]
    assert len(list(ae.parameters())) == 3  # enc.weight, enc.bias, dec.bias
    tying.verify(ae)


def test_assigning_to_a_transposed_target_writes_the_source(models) -> None:
    ae = models.tied_ae()
    new = torch.randn(6, 3)
    ae.dec.weight = new
    assert torch.equal(ae.enc.weight, new.T)
    _assert_transposed_tie(ae)


def test_tied_autoencoder_trains_like_hand_written_reference(models) -> None:
    torch.manual_seed(0)
    ae = models.tied_ae(d=7, h=3).double()
    init = ae.enc.weight.detach().clone()
    w = init.clone().requires_grad_()
    b_enc = ae.enc.bias.detach().clone().requires_grad_()
    b_dec = ae.dec.bias.detach().clone().requires_grad_()
    ref_params = [w, b_enc, b_dec]
    opt = torch.optim.SGD(ae.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref_params, lr=0.1)
    assert len(list(ae.parameters())) == 3
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 7, generator=g, dtype=torch.float64)
        opt.zero_grad()
        ref_opt.zero_grad()
        F.mse_loss(ae(x), x).backward()
        z = torch.tanh(F.linear(x, w, b_enc))
        F.mse_loss(F.linear(z, w.t(), b_dec), x).backward()
        # The gradient reaches only the source leaf, and matches the reference's.
        assert ae.dec.parametrizations.weight.original is ae.enc.weight
        assert not ae.dec.weight.is_leaf and ae.dec.weight.grad_fn is not None
        assert [n for n, p in ae.named_parameters() if p.grad is not None] == ["enc.weight", "enc.bias", "dec.bias"]
        assert torch.equal(ae.enc.weight.grad, w.grad)
        opt.step()
        ref_opt.step()
    assert torch.equal(ae.enc.weight, w)
    assert torch.equal(ae.enc.bias, b_enc)
    assert torch.equal(ae.dec.bias, b_dec)
    assert not torch.equal(w, init)  # it did train
    _assert_transposed_tie(ae)


# --------------------------------------------------------------------------- untie


def test_untie_target_gets_own_copy_others_stay_tied(models) -> None:
    m = models.Seq2Seq()
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    shared = m.encoder.embed.weight
    tying.untie(m, "decoder.out.weight")
    assert m.decoder.out.weight is not shared
    assert isinstance(m.decoder.out.weight, nn.Parameter)
    assert torch.equal(m.decoder.out.weight, shared)
    assert m.decoder.out.weight.data_ptr() != shared.data_ptr()
    assert m.decoder.embed.weight is shared and m.encoder.embed.weight is shared
    assert tying.get_spec(m).ties == [Tie("encoder.embed.weight", "decoder.embed.weight")]
    with torch.no_grad():
        m.decoder.out.weight.add_(1)
    assert not torch.equal(m.decoder.out.weight, shared)
    tying.verify(m)


def test_untie_group_source_hands_group_to_next_member(models) -> None:
    m = models.Seq2Seq()
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    shared = m.encoder.embed.weight
    tying.untie(m, "encoder.embed.weight")
    assert tying.get_spec(m).ties == [Tie("decoder.embed.weight", "decoder.out.weight")]
    assert m.decoder.embed.weight is shared and m.decoder.out.weight is shared
    assert m.encoder.embed.weight is not shared
    assert torch.equal(m.encoder.embed.weight, shared)
    tying.verify(m)


def test_untie_transposed_target(models) -> None:
    ae = models.tied_ae()
    enc = ae.enc.weight
    tying.untie(ae, "dec.weight")
    assert tying.get_spec(ae).ties == []
    assert not hasattr(ae.dec, "parametrizations")
    assert type(ae.dec) is nn.Linear
    assert isinstance(ae.dec._parameters["weight"], nn.Parameter)
    assert ae.dec.weight.shape == (6, 3)
    assert torch.equal(ae.dec.weight, enc.T)
    assert ae.enc.weight is enc
    with torch.no_grad():
        ae.dec.weight.zero_()
    assert not torch.equal(ae.enc.weight, torch.zeros_like(ae.enc.weight))
    tying.verify(ae)


def test_untie_source_with_only_transposed_readers(models) -> None:
    class TwoDecoders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Linear(5, 2)
            self.dec1 = nn.Linear(2, 5)
            self.dec2 = nn.Linear(2, 5)

    m = TwoDecoders()
    tying.tie_transposed(m, "enc.weight", "dec1.weight")
    tying.tie_transposed(m, "enc.weight", "dec2.weight")
    enc = m.enc.weight
    values = enc.detach().clone()
    tying.untie(m, "enc.weight")
    # The first reader becomes a real Parameter in its own layout; the others tie to it plainly.
    assert tying.get_spec(m).ties == [Tie("dec1.weight", "dec2.weight")]
    assert not hasattr(m.dec1, "parametrizations") and not hasattr(m.dec2, "parametrizations")
    assert m.dec2.weight is m.dec1.weight
    assert torch.equal(m.dec1.weight, values.T)
    assert m.enc.weight is not m.dec1.weight
    assert torch.equal(m.enc.weight, values)
    assert m.enc.weight.data_ptr() != m.dec1.weight.data_ptr()
    tying.verify(m)


def test_untie_source_with_mixed_readers(models) -> None:
    m = models.Stack(n=3)
    tying.tie_transposed(m, "layers.0.weight", "layers.1.weight")
    tying.tie(m, "layers.0.weight", "layers.2.weight")
    shared = m.layers[0].weight
    tying.untie(m, "layers.0.weight")
    assert tying.get_spec(m).ties == [Tie("layers.2.weight", "layers.1.weight", "transpose")]
    assert m.layers[2].weight is shared
    assert m.layers[1].parametrizations.weight.original is shared
    assert m.layers[0].weight is not shared and torch.equal(m.layers[0].weight, shared)
    tying.verify(m)


def test_untie_undeclared_hand_tie(models) -> None:
    m = models.TinyLM()
    m.head.weight = m.embed.weight
    tying.untie(m, "head.weight")
    assert m.head.weight is not m.embed.weight
    assert torch.equal(m.head.weight, m.embed.weight)
    tying.verify(m)


def test_untie_something_not_tied_raises(models) -> None:
    m = models.tied_lm()
    with pytest.raises(TieError, match=r"'proj\.weight' is not tied to anything; nothing to untie"):
        tying.untie(m, "proj.weight")


def test_untie_then_tie_again(models) -> None:
    m = models.tied_lm()
    tying.untie(m, "head.weight")
    tying.tie(m, "embed.weight", "head.weight")
    assert m.head.weight is m.embed.weight
    ae = models.tied_ae()
    tying.untie(ae, "dec.weight")
    tying.tie_transposed(ae, "enc.weight", "dec.weight")
    _assert_transposed_tie(ae)


# --------------------------------------------------------------------------- retie


def test_retie_is_idempotent(models) -> None:
    m = models.tied_lm()
    ae = models.tied_ae()
    before = (m.embed.weight, ae.enc.weight, ae.dec.parametrizations.weight)
    for _ in range(3):
        tying.retie(m)
        tying.retie(ae)
    assert m.head.weight is m.embed.weight is before[0]
    assert ae.enc.weight is before[1]
    assert ae.dec.parametrizations.weight is before[2]  # no second parametrization stacked
    assert len(ae.dec.parametrizations.weight) == 1
    _assert_transposed_tie(ae)
    assert tying.get_spec(m).ties == [Tie("embed.weight", "head.weight")]


def test_retie_after_manual_break_uses_source_values(models) -> None:
    m = models.tied_lm()
    src = m.embed.weight.detach().clone()
    m.head.weight = nn.Parameter(torch.zeros(11, 4))
    tying.retie(m)
    assert m.head.weight is m.embed.weight
    assert torch.equal(m.embed.weight, src)


def test_retie_after_to_empty_on_meta(models) -> None:
    with torch.device("meta"):
        m = models.tied_lm()
        ae = models.tied_ae()
    m.to_empty(device="cpu")
    ae.to_empty(device="cpu")
    # to_empty creates one tensor per registration: the ties are broken ...
    assert m.head.weight is not m.embed.weight
    assert not tying.verify(m, raise_error=False).ok
    assert ae.dec.parametrizations.weight.original is not ae.enc.weight
    # ... and retie restores them.
    tying.retie(m)
    tying.retie(ae)
    assert m.head.weight is m.embed.weight and m.embed.weight.device.type == "cpu"
    with torch.no_grad():  # to_empty leaves memory uninitialised: a NaN there would fail torch.equal
        for p in ae.parameters():
            p.normal_()
    _assert_transposed_tie(ae)
    tying.verify(m)
    tying.verify(ae)


def test_load_state_dict_assign_reties_automatically(models) -> None:
    m = models.tied_lm()
    fresh = models.tied_lm()
    m.load_state_dict(fresh.state_dict(), assign=True)
    assert m.head.weight is m.embed.weight
    assert torch.equal(m.embed.weight, fresh.embed.weight)
    assert torch.equal(m.proj.weight, fresh.proj.weight)
    tying.verify(m)

    # A deduplicated state dict (target key missing) with assign=True.
    other = models.tied_lm()
    m.load_state_dict({k: v for k, v in other.state_dict().items() if k != "head.weight"}, assign=True)
    assert m.head.weight is m.embed.weight
    assert torch.equal(m.head.weight, other.embed.weight)

    ae = models.tied_ae()
    fresh_ae = models.tied_ae()
    ae.load_state_dict(fresh_ae.state_dict(), assign=True)
    _assert_transposed_tie(ae)
    assert torch.equal(ae.enc.weight, fresh_ae.enc.weight)
    tying.verify(ae)


# --------------------------------------------------------------------------- deepcopy, dtype


def test_deepcopy_keeps_ties_and_spec(models) -> None:
    m = models.tied_lm()
    c = copy.deepcopy(m)
    assert c.head.weight is c.embed.weight
    assert c.embed.weight is not m.embed.weight
    assert torch.equal(c.embed.weight, m.embed.weight)
    assert tying.get_spec(c).ties == tying.get_spec(m).ties
    assert tying.get_spec(c) is not tying.get_spec(m)
    tying.untie(c, "head.weight")  # the copy's spec is its own
    assert tying.get_spec(m).ties == [Tie("embed.weight", "head.weight")]
    assert m.head.weight is m.embed.weight

    ae = copy.deepcopy(models.tied_ae())
    _assert_transposed_tie(ae)
    tying.verify(ae)
    # The copy's load_state_dict hooks still work.
    ae.load_state_dict(models.tied_ae().state_dict(), assign=True)
    _assert_transposed_tie(ae)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_to_dtype_keeps_ties(models, dtype) -> None:
    m = models.tied_lm().to(dtype)
    assert m.embed.weight.dtype == dtype
    assert m.head.weight is m.embed.weight
    ae = models.tied_ae().to(dtype)
    _assert_transposed_tie(ae)
    assert ae.dec.weight.dtype == dtype
    tying.verify(m)
    tying.verify(ae)


# --------------------------------------------------------------------------- verify


def test_verify_reports_broken_tie(models) -> None:
    m = models.tied_lm()
    m.head.weight = nn.Parameter(torch.randn(11, 4))
    report = tying.verify(m, raise_error=False)
    assert not report.ok
    assert [b.tie for b in report.broken] == [Tie("embed.weight", "head.weight")]
    assert "different values" in report.broken[0].reason
    assert report.undeclared == []
    with pytest.raises(TieVerificationError, match=r"TinyLM: tie verification failed\nbroken tie: embed\.weight -> head\.weight"):
        tying.verify(m)


def test_verify_reports_broken_tie_with_equal_values(models) -> None:
    m = models.tied_lm()
    m.head.weight = nn.Parameter(m.embed.weight.detach().clone())
    report = tying.verify(m, raise_error=False)
    assert "equal values now" in report.broken[0].reason


def test_verify_reports_broken_transposed_tie(models) -> None:
    ae = models.tied_ae()
    ae.dec.parametrizations.weight.original = nn.Parameter(ae.enc.weight.detach().clone())
    report = tying.verify(ae, raise_error=False)
    assert [b.tie for b in report.broken] == [Tie("enc.weight", "dec.weight", "transpose")]
    assert "different Parameter" in report.broken[0].reason


def test_verify_reports_undeclared_hand_tie(models) -> None:
    m = models.TinyLM()
    m.head.weight = m.embed.weight  # nanoGPT-style, not declared
    report = tying.verify(m, raise_error=False)
    assert report.broken == []
    assert report.undeclared == [["embed.weight", "head.weight"]]
    assert "undeclared sharing: embed.weight, head.weight" in str(report)
    with pytest.raises(TieVerificationError, match="undeclared sharing: embed.weight, head.weight"):
        tying.verify(m)


@pytest.mark.parametrize(
    "make",
    [lambda w: nn.Parameter(w.data), lambda w: nn.Parameter(w.data[:2])],
    ids=["same-storage", "slice-view"],
)
def test_verify_reports_distinct_parameters_over_same_storage(models, make) -> None:
    m = models.Stack(n=2)
    m.layers[1].weight = make(m.layers[0].weight)
    assert m.layers[1].weight is not m.layers[0].weight
    report = tying.verify(m, raise_error=False)
    assert report.undeclared == [["layers.0.weight", "layers.1.weight"]]
    with pytest.raises(TieVerificationError):
        tying.verify(m)


def test_verify_clean_models(models) -> None:
    for m in (models.TinyLM(), models.tied_lm(), models.tied_ae()):
        report = tying.verify(m)
        assert report.ok and report.broken == [] and report.undeclared == []
        assert str(report) == "all declared ties hold; no undeclared sharing"


def test_verify_partially_declared_group_is_undeclared(models) -> None:
    m = models.Seq2Seq()
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight")
    m.decoder.out.weight = m.encoder.embed.weight  # a third member nobody declared
    report = tying.verify(m, raise_error=False)
    assert report.broken == []
    assert report.undeclared == [["encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight"]]


# --------------------------------------------------------------------------- load_state_dict hooks


def test_load_state_dict_with_disagreeing_tied_entries_raises_and_changes_nothing(models, snapshot) -> None:
    m = models.tied_lm()
    sd = {k: v.clone() for k, v in models.TinyLM().state_dict().items()}  # head.weight != embed.weight
    snap = snapshot(m)
    with pytest.raises(TieError, match=r"different values for 'head\.weight' and 'embed\.weight'"):
        m.load_state_dict(sd)
    snap.assert_unchanged(m)


def test_load_state_dict_transposed_disagreeing_raises_and_changes_nothing(models, snapshot) -> None:
    ae = models.tied_ae()
    sd = models.AutoEncoder().state_dict()
    snap = snapshot(ae)
    with pytest.raises(TieError, match=r"different values for 'dec\.weight' and the transpose of 'enc\.weight'"):
        ae.load_state_dict(sd)
    snap.assert_unchanged(ae)
    assert "dec.weight" in sd  # the caller's dict is left as it was


def test_load_state_dict_deduplicated_strict(models) -> None:
    m = models.tied_lm()
    src = models.TinyLM()
    sd = {k: v.clone() for k, v in src.state_dict().items() if k != "head.weight"}
    result = m.load_state_dict(sd, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert m.head.weight is m.embed.weight
    assert torch.equal(m.embed.weight, src.embed.weight)


def test_load_state_dict_deduplicated_transposed(models) -> None:
    ae = models.tied_ae()
    src = models.tied_ae()
    sd = {k: v for k, v in src.state_dict().items() if k != "dec.parametrizations.weight.original"}
    ae.load_state_dict(sd, strict=True)
    assert torch.equal(ae.enc.weight, src.enc.weight)
    _assert_transposed_tie(ae)


def test_load_state_dict_deduplicated_keeping_the_target_entry(models) -> None:
    """A deduplicator may keep the target's name and drop the source's (safetensors' save_model
    keeps the alphabetically first): the source is filled from the target."""
    m = models.Seq2Seq()
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    src = models.Seq2Seq()
    tying.tie(src, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    sd = {"decoder.embed.weight": src.decoder.embed.weight.detach().clone()}  # the source's entry dropped
    assert m.load_state_dict(sd, strict=True).missing_keys == []
    assert torch.equal(m.encoder.embed.weight, src.encoder.embed.weight)
    assert m.decoder.out.weight is m.encoder.embed.weight
    # Two kept target entries that disagree are still refused.
    sd["decoder.out.weight"] = torch.zeros(9, 4)
    with pytest.raises(TieError, match="different values"):
        m.load_state_dict(sd)


def test_load_state_dict_of_safetensors_save_model_file_transposed(models, tmp_path) -> None:
    from safetensors.torch import load_file, save_model

    src = models.tied_ae()
    save_model(src, str(tmp_path / "ae.safetensors"))
    sd = load_file(str(tmp_path / "ae.safetensors"))
    assert "enc.weight" not in sd  # save_model kept 'dec.parametrizations.weight.original'
    ae = models.tied_ae()
    ae.load_state_dict(sd, strict=True)
    assert torch.equal(ae.enc.weight, src.enc.weight)
    _assert_transposed_tie(ae)


def test_load_state_dict_plain_untied_layout_into_transposed_model(models) -> None:
    ae = models.tied_ae()
    plain = models.AutoEncoder()
    with torch.no_grad():
        plain.dec.weight.copy_(plain.enc.weight.T)
    sd = plain.state_dict()
    assert set(sd) == {"enc.weight", "enc.bias", "dec.weight", "dec.bias"}
    result = ae.load_state_dict(sd, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(ae.enc.weight, plain.enc.weight)
    assert torch.equal(ae.dec.weight, plain.dec.weight)
    assert torch.equal(ae.dec.bias, plain.dec.bias)
    _assert_transposed_tie(ae)


def test_load_state_dict_plain_layout_with_assign(models) -> None:
    ae = models.tied_ae()
    plain = models.AutoEncoder()
    with torch.no_grad():
        plain.dec.weight.copy_(plain.enc.weight.T)
    ae.load_state_dict(plain.state_dict(), assign=True)
    assert torch.equal(ae.enc.weight, plain.enc.weight)
    _assert_transposed_tie(ae)
    tying.verify(ae)


def test_load_state_dict_of_own_tied_state(models) -> None:
    m = models.tied_lm()
    other = models.tied_lm()
    m.load_state_dict(other.state_dict())
    assert torch.equal(m.embed.weight, other.embed.weight)
    assert m.head.weight is m.embed.weight


# --------------------------------------------------------------------------- errors


def test_error_unknown_path_suggests_closest(models) -> None:
    m = models.TinyLM()
    with pytest.raises(
        TieError,
        match=r"no parameter 'embed\.weigth' in TinyLM: Embedding at 'embed' has no attribute 'weigth'"
        r"; did you mean 'embed\.weight'",
    ):
        tying.tie(m, "embed.weigth", "head.weight")
    with pytest.raises(TieError, match=r"no parameter 'head\.wieght'.*did you mean 'head\.weight'"):
        tying.tie(m, "embed.weight", "head.wieght")


def test_error_unknown_submodule(models) -> None:
    m = models.TinyLM()
    with pytest.raises(TieError, match=r"no parameter 'embedding\.weight' in TinyLM: it has no submodule 'embedding'"):
        tying.tie(m, "embedding.weight", "head.weight")


def test_error_shape_mismatch_names_both_shapes(models) -> None:
    m = models.TinyLM(vocab=11, dim=4)
    with pytest.raises(
        TieError,
        match=r"cannot tie 'proj\.weight' \(shape \[4, 4\]\)"
        r" to 'embed\.weight' \(shape \[11, 4\]\): shapes differ$",
    ):
        tying.tie(m, "embed.weight", "proj.weight")


def test_error_shape_mismatch_hints_transposed_tie(models) -> None:
    ae = models.AutoEncoder(d=6, h=3)
    with pytest.raises(
        TieError,
        match=r"\(shape \[6, 3\]\)"
        r" to 'enc\.weight' \(shape \[3, 6\]\).*use tying\.tie_transposed",
    ):
        tying.tie(ae, "enc.weight", "dec.weight")


def test_error_transposed_shape_mismatch(models) -> None:
    m = models.TinyLM(vocab=11, dim=4)
    with pytest.raises(
        TieError,
        match=r"cannot tie 'head\.weight' \(shape \[11, 4\]\)"
        r" to the transpose of 'embed\.weight' \(shape \[11, 4\], transposed \[4, 11\]\)",
    ):
        tying.tie_transposed(m, "embed.weight", "head.weight")
    with pytest.raises(TieError, match=r"at least 2 dimensions; 'proj\.bias' has shape \[4\]"):
        tying.tie_transposed(m, "proj.bias", "proj.weight")


def test_error_dtype_mismatch(models) -> None:
    m = models.TinyLM()
    m.head.double()
    with pytest.raises(
        TieError,
        match=r"'head\.weight' \(torch\.float64\)"
        r" to 'embed\.weight' \(torch\.float32\): dtypes differ",
    ):
        tying.tie(m, "embed.weight", "head.weight")


def test_error_device_mismatch(models) -> None:
    m = models.TinyLM()
    m.head.weight = nn.Parameter(torch.empty(11, 4, device="meta"))
    with pytest.raises(TieError, match=r"'head\.weight' \(on meta\) to 'embed\.weight' \(on cpu\): devices differ"):
        tying.tie(m, "embed.weight", "head.weight")


def test_error_buffer() -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with pytest.raises(TieError, match=r"'1\.running_mean' is a buffer, not a parameter"):
        tying.tie(m, "1.weight", "1.running_mean")


def test_error_module_instead_of_parameter_suggests_weight(models) -> None:
    m = models.TinyLM()
    with pytest.raises(
        TieError,
        match=r"'embed' is a module \(Embedding\), not a parameter"
        r"; did you mean 'embed\.weight'\?",
    ):
        tying.tie(m, "embed", "head.weight")
    with pytest.raises(TieError, match=r"'proj' is a module \(Linear\).*'proj\.weight' or 'proj\.bias'"):
        tying.tie(m, "embed.weight", "proj")


def test_error_none_bias(models) -> None:
    m = models.TinyLM()
    with pytest.raises(TieError, match=r"'head\.bias' is None in Linear"):
        tying.tie(m, "proj.bias", "head.bias")


def test_error_plain_attribute() -> None:
    m = nn.Linear(2, 2)
    m.scale = torch.ones(2)  # a plain tensor attribute, not registered
    with pytest.raises(TieError, match=r"'scale' is a Tensor attribute of Linear, not a registered nn\.Parameter"):
        tying.tie(m, "bias", "scale")


def test_error_non_string_path(models) -> None:
    with pytest.raises(TieError, match="non-empty string"):
        tying.tie(models.TinyLM(), "", "head.weight")


def test_error_target_already_tied_elsewhere(models) -> None:
    m = models.Stack(n=3)
    tying.tie(m, "layers.0.weight", "layers.2.weight")
    with pytest.raises(
        TieError,
        match=r"'layers\.2\.weight' is already tied to 'layers\.0\.weight'"
        r"; call tying\.untie\(model, 'layers\.2\.weight'\) first",
    ):
        tying.tie(m, "layers.1.weight", "layers.2.weight")
    with pytest.raises(TieError, match=r"already tied to 'layers\.0\.weight'"):
        tying.tie_transposed(m, "layers.0.weight", "layers.2.weight")  # same source, other transform


def test_error_target_is_source(models) -> None:
    with pytest.raises(TieError, match=r"cannot tie 'embed\.weight' to itself"):
        tying.tie(models.TinyLM(), "embed.weight", "embed.weight")
    m = models.Stack()
    tying.tie(m, "layers.0.weight", "layers.1.weight")
    # The reverse of a declared tie names the existing tie (it once said "cannot tie ... to itself").
    with pytest.raises(
        TieError,
        match=r"'layers\.1\.weight' and 'layers\.0\.weight' are tied already: 'layers\.0\.weight -> layers\.1\.weight' "
        r"is declared; to make 'layers\.1\.weight' the source, call tying\.untie",
    ):
        tying.tie(m, "layers.1.weight", "layers.0.weight")
    with pytest.raises(TieError, match="tied already"):
        tying.tie_transposed(m, "layers.1.weight", "layers.0.weight")


def test_error_no_targets(models) -> None:
    with pytest.raises(TieError, match=r"tying\.tie\(model, 'embed\.weight'\) names no target"):
        tying.tie(models.TinyLM(), "embed.weight")


def test_error_target_is_a_group_source(models) -> None:
    m = models.Stack(n=3)
    tying.tie(m, "layers.0.weight", "layers.1.weight")
    with pytest.raises(TieError, match=r"'layers\.0\.weight' is the source of a tie group \('layers\.1\.weight'\)"):
        tying.tie(m, "layers.2.weight", "layers.0.weight")


def test_error_path_inside_parametrization(models) -> None:
    ae = models.tied_ae()
    with pytest.raises(
        TieError,
        match=r"'dec\.parametrizations\.weight\.original' is inside a parametrization"
        r"; name the parametrized tensor 'dec\.weight'",
    ):
        tying.tie(ae, "enc.weight", "dec.parametrizations.weight.original")


def test_error_source_is_a_transposed_target(models) -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Linear(6, 3)
            self.dec = nn.Linear(3, 6)
            self.dec2 = nn.Linear(3, 6)

    m = M()
    tying.tie_transposed(m, "enc.weight", "dec.weight")
    with pytest.raises(
        TieError,
        match=r"cannot tie from 'dec\.weight': it is itself the transpose of 'enc\.weight'"
        r"; name 'enc\.weight' as the source",
    ):
        tying.tie(m, "dec.weight", "dec2.weight")


def test_error_target_with_foreign_parametrization() -> None:
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    parametrize.register_parametrization(m[1], "weight", Double())
    with pytest.raises(TieError, match=r"target '1\.weight' is computed by a parametrization \(Double\)"):
        tying.tie(m, "0.weight", "1.weight")
    with pytest.raises(TieError, match=r"source '1\.weight' is parametrized"):
        tying.tie(m, "1.weight", "0.weight")


def test_failed_tie_changes_nothing(models, snapshot) -> None:
    m = models.Seq2Seq()
    snap = snapshot(m)
    # The first target is fine, the second unknown: nothing is applied.
    with pytest.raises(TieError, match="no parameter"):
        tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.nope.weight")
    snap.assert_unchanged(m)
    assert not hasattr(m, "_tying_spec") or tying.get_spec(m).ties == []


class _Aliased(nn.Module):
    """One embedding registered under two paths (x-transformers' shared token embedding, fairseq's
    share_all_embeddings), plus an output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.alias = self.emb
        self.out = nn.Linear(4, 10, bias=False)


@pytest.mark.parametrize("path", ["alias.weight", "emb.weight"])
def test_untie_refuses_a_path_of_an_aliased_module(path) -> None:
    """It used to drop the declaration silently, keep the alias shared and break emb -> out."""
    m = _Aliased()
    tying.tie(m, "emb.weight", "alias.weight", "out.weight")
    before = list(tying.get_spec(m).ties)
    with pytest.raises(
        TieError,
        match=rf"cannot untie '{re.escape(path)}': it is the same slot as .* registered under the paths .*'(alias|emb)'.*'(alias|emb)'"
        r".*register a separate module",
    ):
        tying.untie(m, path)
    assert tying.get_spec(m).ties == before  # nothing changed
    assert m.out.weight is m.emb.weight is m.alias.weight
    tying.verify(m)
    tying.untie(m, "out.weight")  # the other member still unties
    assert m.out.weight is not m.emb.weight and m.alias.weight is m.emb.weight


def test_spec_of_a_submodule_is_seen_through_a_wrapper(models, tmp_path) -> None:
    """A model wrapping a tied model without a spec of its own answers for its part's ties."""
    inner = models.tied_lm()
    wrapper = nn.Sequential(inner, nn.Identity())
    assert [t.describe() for t in tying.get_spec(wrapper).ties] == ["0.embed.weight -> 0.head.weight"]
    tying.verify(wrapper)  # used to report the tie as undeclared sharing
    path = tying.save(wrapper, tmp_path / "w.safetensors")
    assert [t.describe() for t in tying.read_checkpoint(path).spec.ties] == ["0.embed.weight -> 0.head.weight"]
    fresh = nn.Sequential(models.TinyLM(), nn.Identity())
    tying.load(fresh, path)
    assert fresh[0].head.weight is fresh[0].embed.weight
    # materialize re-ties a wrapped meta model through its part's spec
    with torch.device("meta"):
        lm = models.TinyLM()
    tying.tie(lm, "embed.weight", "head.weight")
    meta = nn.Sequential(lm)
    meta.to_empty(device="cpu")
    assert tying.verify(meta, raise_error=False).broken
    tying.retie(meta)
    assert meta[0].head.weight is meta[0].embed.weight
    # untie through the wrapper removes the part's declaration
    tying.untie(wrapper, "0.head.weight")
    assert tying.get_spec(wrapper).ties == [] and tying.get_spec(inner).ties == []


def test_unknown_path_never_suggests_a_path_it_refuses() -> None:
    """Suggestions used to include '...parametrizations.weight.original1', which resolve refuses."""
    from torch.nn.utils.parametrizations import weight_norm

    m = nn.Sequential(weight_norm(nn.Linear(3, 3)))
    with pytest.raises(TieError) as caught:
        tying.tie(m, "0.weigh", "0.bias")
    assert "parametrizations" not in str(caught.value)


def test_spec_chain_error_names_the_chain() -> None:
    text = json.dumps(
        {"version": 1, "ties": [{"source": "a", "target": "b", "transform": None}, {"source": "b", "target": "c", "transform": None}]}
    )
    with pytest.raises(ValueError, match=r"chain: 'b' is the source of 'b -> c' and the target of 'a -> b'"):
        tying.TieSpec.from_json(text)
