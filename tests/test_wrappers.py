"""Reading a wrapped model once: a peft ``PeftModel`` forwards unknown attributes through
``base_model`` to ``base_model.model``, and its LoRA layers keep the wrapped module as
``base_layer``; tying walks the model's own parameters, so each tie is listed, verified, saved and
loaded once (GPT-2 from a tiny local config, nothing downloaded; the project's LSTM LM)."""

from __future__ import annotations

import warnings

import pytest
import torch

peft = pytest.importorskip("peft", reason="peft is not installed (pip install tying[peft])")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")

import tying  # noqa: E402
from tying.hf import declare_ties  # noqa: E402
from tying.models.lstm import LSTMConfig, LSTMLanguageModel  # noqa: E402

transformers.utils.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")


def gpt2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg)
    declare_ties(model)
    return model


def lstm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return LSTMLanguageModel(LSTMConfig(vocab_size=40, embedding_size=8, hidden_size=8, num_layers=1, tie=True, projection=True))


# (builder, LoRA target modules, the tie as the wrapped model holds it). On the tied sites
# themselves peft's ensure_weight_tying shares one update between them (independent updates
# break the tie: tests/test_peft.py).
CASES = {
    "gpt2-attention": (gpt2, ["c_attn"], ("transformer.wte.weight", "lm_head.weight")),
    "gpt2-tied-sites": (gpt2, ["wte", "lm_head"], ("transformer.wte.base_layer.weight", "lm_head.base_layer.weight")),
    "lstm-projection": (lstm, ["projection"], ("encoder.weight", "decoder.weight")),
}


def wrapped(case: str, seed: int = 0) -> torch.nn.Module:
    build, targets, _ = CASES[case]
    shared = {"ensure_weight_tying": True} if "wte" in targets else {}
    return peft.get_peft_model(build(seed), peft.LoraConfig(r=2, target_modules=targets, init_lora_weights=False, **shared))


@pytest.mark.parametrize("case", CASES)
def test_a_peft_model_lists_each_tie_once(case: str) -> None:
    """*Why*, PEFT: get_spec listed the tie three times (PeftModel and LoraModel forward the spec attribute)."""
    model = wrapped(case)
    source, target = (f"base_model.model.{p}" for p in CASES[case][2])
    assert [(t.source, t.target) for t in tying.get_spec(model).ties] == [(source, target)]
    groups = [g.paths for g in tying.find_ties(model)]
    # Besides the tie, peft's ensure_weight_tying shares the update's A and B between the two sites.
    assert [g for g in groups if not any("lora_" in p for p in g)] == [[source, target]]
    assert [r.paths for r in tying.summary(model).rows if not any("lora_" in p for p in r.paths)] == [(source, target)]


@pytest.mark.parametrize("case", CASES)
def test_a_peft_model_verifies_saves_and_loads(case: str, tmp_path) -> None:
    """*Why*, PEFT: verify reported three broken ties and tying.save refused every PEFT model."""
    model = wrapped(case, seed=0)
    assert tying.verify(model).ok
    path = tying.save(model, tmp_path / "peft.safetensors")
    info = tying.read_checkpoint(path)
    assert len(info.spec.ties) == 1
    fresh = wrapped(case, seed=1)
    tying.load(fresh, path)
    tying.verify(fresh)
    want, got = model.state_dict(), fresh.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    source, target = (f"base_model.model.{p}" for p in CASES[case][2])
    assert fresh.get_parameter(source) is fresh.get_parameter(target)


def test_a_tie_declared_on_the_wrapped_model_is_not_copied_to_the_wrappers() -> None:
    model = wrapped("gpt2-attention")
    assert "_tying_spec" not in model.__dict__ and "_tying_spec" not in model.base_model.__dict__
    tying.untie(model, "base_model.model.lm_head.weight")
    assert tying.get_spec(model).ties == [] and tying.verify(model).ok
