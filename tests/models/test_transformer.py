"""TransformerLanguageModel: the tie, parameter counts, causality, initialisation, gradients,
meta-device materialisation and checkpoints."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tying
from tying.models import TransformerConfig, TransformerLanguageModel

SMALL = TransformerConfig(vocab_size=50, context_size=12, embedding_size=16, num_layers=2, num_heads=4)


def _gpt(**changes) -> TransformerLanguageModel:
    return TransformerLanguageModel(replace(SMALL, **changes))


def test_output_layer_is_the_token_embedding_parameter() -> None:
    model = _gpt()
    assert model.lm_head.weight is model.wte.weight
    assert [(t.source, t.target) for t in tying.get_spec(model).ties] == [("wte.weight", "lm_head.weight")]
    tying.verify(model)
    untied = _gpt(tie=False)
    assert untied.lm_head.weight is not untied.wte.weight and not tying.get_spec(untied).ties


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_counts_match_closed_form(tie: bool) -> None:
    V, T, d, L = 50, 12, 16, 2
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)  # 2 LNs, qkv, proj, fc, proj
    unique = V * d + T * d + L * block + 2 * d + (0 if tie else V * d)
    s = tying.summary(_gpt(tie=tie))
    assert s.unique_parameters == unique == sum(p.numel() for p in _gpt(tie=tie).parameters())
    assert s.total_parameters == unique + (V * d if tie else 0)  # the tied matrix listed under both paths


def test_position_t_sees_only_tokens_up_to_t() -> None:
    torch.manual_seed(0)
    model = _gpt().eval()
    a = torch.randint(0, 50, (2, 10))
    b = a.clone()
    b[:, 6:] = (b[:, 6:] + 1) % 50  # change the future after position 5
    la, lb = model(a), model(b)
    assert torch.equal(la[:, :6], lb[:, :6])
    assert not torch.allclose(la[:, 6:], lb[:, 6:])


def test_forward_is_features_then_logits_and_the_fused_loss_agrees() -> None:
    torch.manual_seed(0)
    model = _gpt()
    tokens = torch.randint(0, 50, (3, 11))
    hidden = model.features(tokens[:, :-1])
    assert torch.equal(model(tokens[:, :-1]), model.logits(hidden))
    naive = F.cross_entropy(model.logits(hidden).flatten(0, 1), tokens[:, 1:].flatten())
    torch.testing.assert_close(model.lm_head.loss(hidden.flatten(0, 1), tokens[:, 1:].flatten()), naive, rtol=1e-6, atol=1e-6)


def test_tied_gradient_is_the_sum_of_both_uses() -> None:
    torch.manual_seed(0)
    tied = _gpt()
    untied = _gpt(tie=False)
    untied.load_state_dict(tied.state_dict())  # same values; lm_head.weight a separate copy
    tokens = torch.randint(0, 50, (2, 9))
    for m in (tied, untied):
        F.cross_entropy(m(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
    torch.testing.assert_close(tied.wte.weight.grad, untied.wte.weight.grad + untied.lm_head.weight.grad, rtol=1e-5, atol=1e-7)


def test_gpt2_initialisation_draws_the_tied_weight_once() -> None:
    torch.manual_seed(0)
    model = _gpt(vocab_size=2000, embedding_size=64, num_layers=4)
    std = model.config.init_std
    assert model.wte.weight.std().item() == pytest.approx(std, rel=0.05)
    residual = model.blocks[0].mlp.proj.weight
    assert residual.std().item() == pytest.approx(std / math.sqrt(2 * 4), rel=0.05)
    assert torch.equal(model.blocks[1].ln_1.weight, torch.ones(64)) and not model.blocks[1].attn.qkv.bias.any()
    # reset_parameters is deterministic given the seed, however many paths reach the tied weight.
    torch.manual_seed(1)
    model.reset_parameters()
    first = model.wte.weight.clone()
    torch.manual_seed(1)
    model.reset_parameters()
    assert torch.equal(model.wte.weight, first) and model.lm_head.weight is model.wte.weight


def test_materialize_from_meta_keeps_the_tie_and_checkpoint_round_trips(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = _gpt()
    tying.materialize(model, "cpu")
    assert model.lm_head.weight is model.wte.weight and model.wte.weight.device.type == "cpu"
    path = tying.save(model, tmp_path / "gpt.safetensors")
    fresh = _gpt(tie=False)
    result = tying.load(fresh, path)
    assert fresh.lm_head.weight is fresh.wte.weight and [t.describe() for t in result.applied_ties] == ["wte.weight -> lm_head.weight"]
    tokens = torch.randint(0, 50, (2, 8))
    assert torch.equal(fresh(tokens), model(tokens))


def test_invalid_sizes_say_what_to_change() -> None:
    with pytest.raises(ValueError, match=r"num_heads=3 does not divide embedding_size=16"):
        _gpt(num_heads=3)
    with pytest.raises(ValueError, match=r"sequence of 13 tokens is longer than context_size=12"):
        _gpt()(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.parametrize(
    ("layers", "unique", "strategy", "sets"),
    [(6, 3, "cycle_rev", (0, 1, 2, 2, 1, 0)), (6, 2, "sequence", (0, 0, 0, 1, 1, 1)), (4, 3, "cycle", (0, 1, 2, 0)), (3, 1, "all", (0, 0, 0))],
)
def test_share_fields_make_the_blocks_use_unique_sets(layers: int, unique: int, strategy: str, sets: tuple[int, ...]) -> None:
    model = _gpt(num_layers=layers, share_unique=unique, share_strategy=strategy)
    (sharing,) = tying.layer_sharing(model)
    assert sharing.path == "blocks" and sharing.assignment == sets and sharing.share_norms
    for i, s in enumerate(sets):
        owner = model.blocks[sets.index(s)]
        assert all(a is b for a, b in zip(model.blocks[i].parameters(), owner.parameters(), strict=True))
    unshared = _gpt(num_layers=layers)
    block = sum(p.numel() for p in unshared.blocks[0].parameters())
    assert tying.summary(model).unique_parameters == tying.summary(unshared).unique_parameters - (layers - unique) * block
    assert model.lm_head.weight is model.wte.weight  # the embedding tie stays


def test_share_norms_false_leaves_each_blocks_layer_norms_its_own() -> None:
    model = _gpt(num_layers=4, share_unique=1, share_strategy="all", share_norms=False)
    assert model.blocks[3].attn.qkv.weight is model.blocks[0].attn.qkv.weight
    assert model.blocks[3].ln_1.weight is not model.blocks[0].ln_1.weight
    assert not tying.layer_sharing(model)[0].share_norms


def test_shared_blocks_scale_residual_projections_by_all_layers_and_sum_gradients() -> None:
    torch.manual_seed(0)
    model = _gpt(num_layers=4, share_unique=2, share_strategy="cycle")
    std = model.blocks[0].attn.proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * 4)) < 0.004  # L counts applied blocks, not sets
    tokens = torch.randint(0, 50, (2, 8))
    model(tokens).sum().backward()
    grad = model.blocks[0].mlp.fc.weight.grad
    assert grad is not None and model.blocks[2].mlp.fc.weight.grad is grad  # one leaf for blocks 0 and 2


def test_meta_build_with_shared_blocks_materializes_equal_to_eager(tmp_path: Path) -> None:
    config = dict(num_layers=6, share_unique=3, share_strategy="cycle_rev")
    torch.manual_seed(1)
    eager = _gpt(**config)
    torch.manual_seed(1)
    with torch.device("meta"):
        model = _gpt(**config)
    tying.materialize(model, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), eager.state_dict().values(), strict=True))
    assert str(tying.layer_sharing(model)[0]) == str(tying.layer_sharing(eager)[0]) == "blocks: 6 layers over 3 sets (cycle_rev): A B C C B A"
    assert model.blocks[5].attn.qkv.weight is model.blocks[0].attn.qkv.weight
    tokens = torch.randint(0, 50, (2, 8))
    assert torch.equal(model(tokens), eager(tokens))
    fresh = _gpt(num_layers=6)
    tying.load(fresh, tying.save(eager, tmp_path / "shared.safetensors"))
    assert tying.layer_sharing(fresh)[0].assignment == (0, 1, 2, 2, 1, 0) and torch.equal(fresh(tokens), eager(tokens))
