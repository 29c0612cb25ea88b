"""LoRA on a tie group (tying.peft) against peft 0.21.2, on GPT-2 (tiny local config, nothing
downloaded) and the project's LSTM LM: one update both sites see, a merge that keeps the tie and
the adapter model's logits, and peft's per-site adapters reported by verify / refused by the merge."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

peft = pytest.importorskip("peft", reason="peft is not installed (pip install tying[peft])")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")

import tying  # noqa: E402
import tying.peft as tp  # noqa: E402
from tying.hf import declare_ties  # noqa: E402
from tying.models.lstm import LSTMConfig, LSTMLanguageModel  # noqa: E402

transformers.utils.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message=".*(fan_in_fan_out|ensure_weight_tying|is_gradient_checkpointing).*")
V = 60
IDS = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(1))


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=V, n_positions=32))
    declare_ties(model)
    return model.eval()


def lstm() -> LSTMLanguageModel:
    torch.manual_seed(0)
    return LSTMLanguageModel(LSTMConfig(vocab_size=V, embedding_size=16, hidden_size=16, num_layers=1, tie=True, dropout=0.0)).eval()


def is_lstm(model) -> bool:
    return hasattr(model, "init_state") or hasattr(getattr(model, "base_model", None), "init_state")


def logits(model) -> torch.Tensor:
    if is_lstm(model):
        return model(IDS.t(), model.init_state(IDS.size(0)))[0]
    return model(input_ids=IDS).logits


def train(model, params, steps: int = 5) -> None:
    opt = torch.optim.SGD(params, lr=20.0 if is_lstm(model) else 0.5)
    for _ in range(steps):
        opt.zero_grad()
        logits(model)[..., :-1].logsumexp(-1).mean().backward()  # any loss that moves every site
        opt.step()


def with_peft(build, targets, **kw):
    model = peft.get_peft_model(build(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, **kw))
    train(model, [p for p in model.parameters() if p.requires_grad])
    return model


CASES = {
    "gpt2-both": (gpt2, ["wte", "lm_head"], "transformer.wte.base_layer.weight -> lm_head.base_layer.weight"),
    "gpt2-head": (gpt2, ["lm_head"], "transformer.wte.weight -> lm_head.base_layer.weight"),
    "lstm-both": (lstm, ["encoder", "decoder"], "encoder.base_layer.weight -> decoder.base_layer.weight"),
    "lstm-head": (lstm, ["decoder"], "encoder.weight -> decoder.base_layer.weight"),
}


@pytest.mark.parametrize("case", CASES)
def test_peft_lora_on_a_tie_group_is_reported_and_its_merge_refused(case) -> None:
    """*Why*, PEFT: peft's merge put both updates (or the head's alone) into the shared matrix, and
    verify passed silently after it; now verify reports the group before, tying's merge refuses."""
    build, targets, tie = CASES[case]
    model = with_peft(build, targets)
    report = tying.verify(model, raise_error=False)
    source, target = tie.split(" -> ")
    assert [b.tie.describe() for b in report.broken] == [f"base_model.model.{source} -> base_model.model.{target}"]
    assert "the adapters on its members differ" in report.broken[0].reason and "tying.peft.add_lora(model, source)" in report.broken[0].reason
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(tying.TieError, match="cannot merge the adapters into the tied model; nothing was changed"):
        tp.merge_and_unload(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        want = logits(model)
        assert (logits(model.merge_and_unload()) - want).abs().max() > 1e-3 * want.abs().max()  # what peft's own merge does


def test_peft_shared_adapter_merges_once_with_tying() -> None:
    """peft's ensure_weight_tying shares one update, but its merge adds it once per site."""
    twins = [with_peft(gpt2, ["wte", "lm_head"], ensure_weight_tying=True) for _ in range(2)]
    assert tying.verify(twins[0]).ok
    with torch.no_grad():
        want = logits(twins[0])
        ours = tp.merge_and_unload(twins[0])
        assert (logits(ours) - want).abs().max() < 1e-5
        assert (logits(twins[1].merge_and_unload()) - want).abs().max() > 0.05
    assert ours.lm_head.weight is ours.transformer.wte.weight and tying.verify(ours).ok


def test_a_merged_peft_adapter_on_a_tie_member_is_reported() -> None:
    model = with_peft(gpt2, ["wte", "lm_head"], ensure_weight_tying=True)
    model.merge_adapter()
    (broken,) = tying.verify(model, raise_error=False).broken
    assert "is merged into the shared matrix, which every member reads" in broken.reason


def test_peft_adapter_file_stores_the_base_twice_tying_once(tmp_path) -> None:
    """*Why*, PEFT: the adapter file stored the base matrix twice."""
    from safetensors import safe_open

    model = with_peft(gpt2, ["wte", "lm_head"])
    model.save_pretrained(tmp_path / "peft")
    with safe_open(str(tmp_path / "peft" / "adapter_model.safetensors"), "pt") as f:
        assert sum(tuple(f.get_slice(k).get_shape()) == (V, 16) for k in f.keys()) == 2
    shared = with_peft(gpt2, ["wte", "lm_head"], ensure_weight_tying=True)
    info = tying.read_checkpoint(tying.save(shared, tmp_path / "tied.safetensors"))
    assert [t.name for t in info.tensors if t.shape == (V, 16)] == ["base_model.model.transformer.wte.base_layer.weight"]


@pytest.mark.parametrize("build, path, embed", [(gpt2, "lm_head.weight", "transformer.wte"), (lstm, "decoder.weight", "encoder")])
def test_add_lora_gives_both_sites_one_update_and_merges_exactly(build, path, embed, tmp_path) -> None:
    model = build()
    tp.add_lora(model, path, rank=4, alpha=8)
    assert tying.verify(model).ok
    params = tp.lora_parameters(model)
    assert [tuple(p.shape) for p in params] == [(4, 16), (V, 4)]
    assert [n for n, p in model.named_parameters() if p.requires_grad and ("lora" in n or embed in n)] == [
        f"{embed}.parametrizations.weight.0.lora_A", f"{embed}.parametrizations.weight.0.lora_B",
    ]
    train(model, params)
    head = model.get_submodule(path.rpartition(".")[0])
    embedding = model.get_submodule(embed)
    effective = embedding.weight
    assert torch.equal(head.weight, effective) and not torch.equal(effective, embedding.parametrizations.weight.original)
    assert torch.equal(F.embedding(IDS, effective), F.embedding(IDS, embedding.weight))
    with torch.no_grad():
        want = logits(model)
    path_file = tying.save(model, tmp_path / "lora.safetensors")
    info = tying.read_checkpoint(path_file)
    assert info.spec.parametrizations == {f"{embed}.weight": {"kind": "lora", "rank": 4, "alpha": 8.0}}
    assert sum(t.shape == (V, 16) for t in info.tensors) == 1
    fresh = build()
    tp.add_lora(fresh, path, rank=4, alpha=8)
    tying.load(fresh, path_file)
    with torch.no_grad():
        assert torch.equal(logits(fresh), want)
    tp.merge(model)
    with torch.no_grad():
        assert (logits(model) - want).abs().max() < 1e-6
    assert head.weight is embedding.weight and tying.get_spec(model).parametrizations == {} and tying.verify(model).ok
    assert sum(t.shape == (V, 16) for t in tying.read_checkpoint(tying.save(model, tmp_path / "m.safetensors")).tensors) == 1


def test_add_lora_refuses_what_it_cannot_do() -> None:
    model = gpt2()
    with pytest.raises(ValueError, match=r"add_lora\(rank=0\): the rank must be at least 1"):
        tp.add_lora(model, "lm_head.weight", rank=0)
    with pytest.raises(tying.TieError, match="'transformer.wpe.weight' is not tied; tying.peft.add_lora puts one update on a whole tie group"):
        tp.add_lora(model, "transformer.wpe.weight")
    tp.add_lora(model, "lm_head.weight", rank=4)
    tp.add_lora(model, "lm_head.weight", rank=4)  # the same again: nothing to do
    with pytest.raises(tying.TieError, match="is parametrized already as .*'rank': 4.*not again as .*'rank': 2"):
        tp.add_lora(model, "lm_head.weight", rank=2)
