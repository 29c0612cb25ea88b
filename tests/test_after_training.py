"""Trainer and torch utilities on tied models: transformers' Trainer, save_pretrained folders,
the missing-key hint, tying.functional_call and a foreign parametrization on one member."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import tying

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
from tying.hf import declare_ties  # noqa: E402

transformers.utils.logging.set_verbosity_error()
CFG = dict(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 20, bias=False)
        tying.tie(self, "embed.weight", "head.weight")

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(torch.tanh(self.mix(self.embed(input_ids))))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return out


class Rows(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.arange(i, i + 6) % 20
        return {"input_ids": ids, "labels": (ids + 1) % 20}


def _args(tmp_path, **kw):
    settings = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=4, save_steps=2, report_to=[],
        use_cpu=True, logging_strategy="no", disable_tqdm=True,
    )
    return transformers.TrainingArguments(**{**settings, **kw})


def test_plain_trainer_crashes_on_a_tied_module(tmp_path) -> None:
    """*Why*, Trainer: a plain tied nn.Module crashed at its first save (safetensors refuses shared memory)."""
    torch.manual_seed(0)
    trainer = transformers.Trainer(model=TiedLM(), args=_args(tmp_path), train_dataset=Rows())
    with pytest.raises(RuntimeError, match="share memory"):
        trainer.train()


def test_tied_trainer_trains_and_saves_through_tying(tmp_path) -> None:
    from tying.hf_trainer import TiedTrainer

    torch.manual_seed(0)
    model = TiedLM()
    before = model.embed.weight.detach().clone()
    TiedTrainer(model=model, args=_args(tmp_path), train_dataset=Rows()).train()
    assert model.head.weight is model.embed.weight and not torch.equal(before, model.embed.weight)
    path = tmp_path / "out" / "checkpoint-4" / "model.safetensors"
    info = tying.read_checkpoint(path)
    assert [t.describe() for t in info.spec.ties] == ["embed.weight -> head.weight"]
    assert "head.weight" not in {t.name for t in info.tensors}
    fresh = TiedLM()
    tying.load(fresh, path)
    assert torch.equal(fresh.embed.weight, model.embed.weight) and fresh.head.weight is fresh.embed.weight
    # Resuming reads the checkpoint back through load_state_dict (the tie-aware hook fills head.weight).
    resumed = TiedLM()
    TiedTrainer(model=resumed, args=_args(tmp_path, max_steps=5), train_dataset=Rows()).train(resume_from_checkpoint=str(path.parent))
    assert resumed.head.weight is resumed.embed.weight


def gpt2(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**CFG))


@pytest.mark.parametrize("shard", [None, "10KB"])
def test_load_reads_a_save_pretrained_folder(tmp_path, shard) -> None:
    """*Why*, Trainer and friends: tying.load on a save_pretrained folder failed ("not a regular file")."""
    model = gpt2(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / ("model.safetensors.index.json" if shard else "model.safetensors")).is_file()
    fresh = gpt2(1)
    declare_ties(fresh)
    tying.load(fresh, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert fresh.lm_head.weight is fresh.transformer.wte.weight


def test_a_folder_that_is_not_save_pretrained_is_named(tmp_path) -> None:
    with pytest.raises(tying.CheckpointError, match=r"is not a regular file, nor a save_pretrained folder \(it holds no model.safetensors or model.safetensors.index.json\)"):
        tying.load(TiedLM(), tmp_path)


def test_the_missing_key_error_names_declare_ties(tmp_path) -> None:
    """*Why*, Trainer and friends: a missing-key error did not hint at declare_ties."""
    gpt2(0).save_pretrained(tmp_path)
    with pytest.raises(tying.CheckpointError) as err:
        tying.load(gpt2(1), tmp_path)
    assert str(err.value).endswith(
        "missing key 'lm_head.weight' (the model's class ties it to 'transformer.wte.weight' and the file stores that tie "
        "once; declare the ties with tying.hf.declare_ties(model) before loading)"
    )


class Transposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 4, bias=False)
        self.dec = nn.Linear(4, 6, bias=False)
        tying.tie_transposed(self, "enc.weight", "dec.weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(x)))


def test_functional_call_takes_one_name_per_tie_group() -> None:
    """*Why*, torch utilities: torch.func.functional_call needed both tied names (two raise ValueError)."""
    model = TiedLM()
    ids = torch.tensor([[1, 2, 3]])
    w = torch.randn(20, 8, requires_grad=True)
    with pytest.raises(ValueError, match="which are tied"):
        torch.func.functional_call(model, {"embed.weight": w, "head.weight": w.clone()}, (ids,))
    want = (torch.tanh(model.mix(w[ids])) @ w.T)
    for name in ("embed.weight", "head.weight"):
        got = tying.functional_call(model, {name: w}, (ids,))["logits"]
        assert torch.equal(got, want)
    assert torch.equal(tying.functional_call(model, {"embed.weight": w, "head.weight": w}, (ids,))["logits"], want)
    with pytest.raises(ValueError, match="'embed.weight' and 'head.weight' are one tie group but were given different tensors"):
        tying.functional_call(model, {"embed.weight": w, "head.weight": w.detach() + 1}, (ids,))
    tying.functional_call(model, {"head.weight": w}, (ids,))["logits"].sum().backward()
    assert w.grad is not None and model.embed.weight.grad is None


def test_functional_call_reads_a_transposed_group_from_either_name() -> None:
    model = Transposed()
    x, w = torch.randn(3, 6), torch.randn(4, 6)
    want = torch.tanh(x @ w.T) @ w
    assert torch.allclose(tying.functional_call(model, {"enc.weight": w}, (x,)), want)
    assert torch.allclose(tying.functional_call(model, {"dec.weight": w.T}, (x,)), want)


class Double(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w / 2


def test_a_foreign_parametrization_on_one_member_is_reported() -> None:
    """*Why*, torch utilities: register_parametrization with a right_inverse on one member halved the
    other member's weight while verify said all ties hold."""
    model = TiedLM()
    before = model.embed.weight.detach().clone()
    parametrize.register_parametrization(model.head, "weight", Double())
    assert torch.equal(model.embed.weight, before / 2)  # what torch does to the shared tensor
    report = tying.verify(model, raise_error=False)
    assert [str(b) for b in report.broken] == [
        "embed.weight -> head.weight: the target 'head.weight' is computed by a parametrization tying did not install (Double) "
        "from the shared tensor, so the members no longer read one weight (its right_inverse, if any, rewrote the shared values "
        "for all of them); remove it (torch.nn.utils.parametrize.remove_parametrizations) or tying.untie(model, 'head.weight') first"
    ]
    with pytest.raises(tying.CheckpointError, match="declared ties are broken"):
        tying.save(model, "unused.safetensors")
