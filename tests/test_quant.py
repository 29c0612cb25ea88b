"""Quantized ties (torchao 0.18.0, int8 weight-only): tensor subclasses never crash find_ties /
verify / save; tying.quant.quantize_ keeps a tie group as one quantized tensor where the layout
allows and unties explicitly otherwise; retie never dequantizes; nothing is called "sharded"."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

torchao = pytest.importorskip("torchao", reason="torchao is not installed (pip install tying[quant])")
from torchao.quantization import Int8WeightOnlyConfig, quantize_ as ao_quantize  # noqa: E402

import tying  # noqa: E402
import tying.quant as tq  # noqa: E402
from tying.models.lstm import LSTMConfig, LSTMLanguageModel  # noqa: E402

warnings.filterwarnings("ignore", message=".*register_constant.*")


def lstm(seed: int = 0) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    return LSTMLanguageModel(LSTMConfig(vocab_size=40, embedding_size=8, hidden_size=8, num_layers=1, tie=True)).eval()


def logits(model: LSTMLanguageModel, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens, model.init_state(tokens.size(1)))[0]


TOKENS = torch.randint(0, 40, (6, 3), generator=torch.Generator().manual_seed(0))


def test_torchaos_quantize_unties_and_verify_says_so_without_crashing(tmp_path) -> None:
    """*Why*, quantization: verify / save crashed with NotImplementedError (aten.equal on Int8Tensor)."""
    model = lstm()
    ao_quantize(model, Int8WeightOnlyConfig())  # the head only: int8 head, fp32 embedding
    assert tying.find_ties(model) == []  # they are two objects now; verify names the declared tie
    report = tying.verify(model, raise_error=False)
    assert [str(b) for b in report.broken] == [
        "encoder.weight -> decoder.weight: distinct Parameter objects: 'decoder.weight' holds an Int8Tensor, 'encoder.weight' "
        "a plain tensor (quantized one by one, e.g. by torchao's quantize_); quantize the group once with tying.quant.quantize_"
    ]
    with pytest.raises(tying.CheckpointError, match="declared ties are broken .*quantize the group once"):
        tying.save(model, tmp_path / "q.safetensors")
    assert not (tmp_path / "q.safetensors").exists()


def test_retie_never_dequantizes_a_quantized_member() -> None:
    """*Why*, quantization: retie silently dequantized the head."""
    model = lstm()
    ao_quantize(model, Int8WeightOnlyConfig())
    with pytest.raises(tying.TieError) as err:
        tying.retie(model)
    assert str(err.value) == (
        "cannot tie 'decoder.weight' (an Int8Tensor) to 'encoder.weight' (a plain tensor): one object for both would silently "
        "change what the other computes; quantize the group once with tying.quant.quantize_(model), "
        "or tying.untie(model, 'decoder.weight') to keep them apart"
    )
    assert type(model.decoder.weight).__name__ == "Int8Tensor"


def test_an_untied_quantized_model_saves_and_is_not_called_sharded(tmp_path) -> None:
    """*Why*, quantization: untie then save misreported the model as sharded."""
    model = lstm()
    ao_quantize(model, Int8WeightOnlyConfig())
    tying.untie(model, "decoder.weight")
    path = tying.save(model, tmp_path / "q.safetensors")
    info = tying.read_checkpoint(path)
    assert list(info.wrapped) == ["decoder.weight"] and info.wrapped["decoder.weight"]["class"].endswith("Int8Tensor")
    assert {t.name for t in info.tensors} >= {"decoder.weight:qdata", "decoder.weight:scale", "encoder.weight"}


def test_quantize_keeps_the_group_as_one_int8_tensor_and_saves_it_once(tmp_path) -> None:
    model = lstm()
    before = logits(model, TOKENS)
    report = tq.quantize_(model)
    assert report.shared == [["encoder.weight", "decoder.weight"]] and report.untied == []
    assert model.encoder.weight is model.decoder.weight and type(model.decoder.weight).__name__ == "Int8Tensor"
    assert tying.verify(model).ok
    after = logits(model, TOKENS)
    assert (after - before).abs().max() < 0.05  # int8 rounding only
    path = tying.save(model, tmp_path / "q.safetensors")
    info = tying.read_checkpoint(path)
    assert info.aliases == {"decoder.weight": "encoder.weight"} and list(info.wrapped) == ["encoder.weight"]
    assert next(t for t in info.tensors if t.name == "encoder.weight:qdata").dtype == "I8"
    fresh = lstm(seed=1)
    tq.quantize_(fresh)
    tq.load(fresh, path)
    assert fresh.encoder.weight is fresh.decoder.weight
    assert torch.equal(logits(fresh, TOKENS), after)
    with pytest.raises(tying.CheckpointError, match=r"holds quantized tensors \(Int8Tensor: encoder.weight\); load it with tying.quant.load"):
        tying.load(lstm(seed=2), path)


def test_quantize_untie_is_explicit_and_quantizes_both() -> None:
    model = lstm()
    with pytest.warns(UserWarning, match=r"untied 'decoder.weight' from 'encoder.weight' \(ties='untie' asked for it\)"):
        report = tq.quantize_(model, ties="untie")
    assert report.untied == [("decoder.weight", "encoder.weight", "ties='untie' asked for it")]
    assert tying.get_spec(model).ties == [] and tying.verify(model).ok
    assert {type(model.encoder.weight).__name__, type(model.decoder.weight).__name__} == {"Int8Tensor"}
    assert model.encoder.weight is not model.decoder.weight


class Transposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(12, 8)
        self.dec = nn.Linear(8, 12)
        tying.tie_transposed(self, "enc.weight", "dec.weight")


def test_a_transposed_group_is_untied_with_the_reason() -> None:
    torch.manual_seed(0)
    model = Transposed()
    with pytest.warns(UserWarning, match="a transpose tie cannot read one quantized tensor"):
        report = tq.quantize_(model)
    assert report.untied == [("dec.weight", "enc.weight", "a transpose tie cannot read one quantized tensor")]
    assert tying.verify(model).ok and tying.get_spec(model).ties == []


def test_quantize_refuses_broken_ties_and_bad_policy() -> None:
    model = lstm()
    with pytest.raises(tying.TieError, match=r"quantize_\(ties='both'\): use 'share'"):
        tq.quantize_(model, ties="both")
    model.decoder.weight = nn.Parameter(model.decoder.weight.detach().clone())
    with pytest.raises(tying.TieError, match="cannot quantize the model: declared ties are broken"):
        tq.quantize_(model)


def test_gpt2_keeps_its_tie_as_one_int8_matrix(tmp_path) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    from tying.hf import declare_ties

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    declare_ties(model)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids).logits
    assert tq.quantize_(model).shared == [["transformer.wte.weight", "lm_head.weight"]]
    assert model.transformer.wte.weight is model.lm_head.weight and tying.verify(model).ok
    with torch.no_grad():
        assert (model(ids).logits - before).abs().max() < 0.05
    info = tying.read_checkpoint(tying.save(model, tmp_path / "gpt2.safetensors"))
    assert list(info.wrapped) == ["transformer.wte.weight"]
