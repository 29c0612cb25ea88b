"""param_groups, unique_parameters, count_parameters: each shared Parameter once, named and
grouped by its declared source, where per-name rules make torch raise or double-count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tying

# --------------------------------------------------------------------------- unique_parameters


def test_unique_parameters_names_each_object_once(models) -> None:
    m = models.tied_lm()
    params = tying.unique_parameters(m)
    assert list(params) == ["embed.weight", "proj.weight", "proj.bias"]
    assert params["embed.weight"] is m.head.weight is m.embed.weight


def test_a_declared_group_is_named_by_its_source_whatever_the_registration_order(models) -> None:
    m = models.HeadFirstLM()
    tying.tie(m, "embed.weight", "head.weight")
    assert [k for k, _ in m.named_parameters()] == ["head.weight"]  # torch keeps the first name
    assert list(tying.unique_parameters(m)) == ["embed.weight"]


def test_a_transposed_group_is_named_by_its_source() -> None:
    m = nn.Module()
    m.dec = nn.Linear(3, 6)
    m.enc = nn.Linear(6, 3)
    tying.tie_transposed(m, "enc.weight", "dec.weight")
    assert [k for k, _ in m.named_parameters()] == ["dec.bias", "dec.parametrizations.weight.original", "enc.bias"]
    params = tying.unique_parameters(m)
    assert list(params) == ["dec.bias", "enc.weight", "enc.bias"]
    assert params["enc.weight"] is m.enc.weight


def test_undeclared_sharing_keeps_the_first_path(models) -> None:
    m = models.HeadFirstLM()
    m.embed.weight = m.head.weight  # hand tie, no declaration
    assert list(tying.unique_parameters(m)) == ["head.weight"]


# --------------------------------------------------------------------------- param_groups


def _module_type_split(model: nn.Module, weight_decay: float) -> list[dict]:
    """minGPT's rule, applied per (module, name): Linear weights decay, embeddings and biases do not."""
    decay, no_decay = [], []
    for _, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def test_a_naive_split_of_a_tied_model_makes_torch_raise_and_ours_does_not(models) -> None:
    m = models.tied_lm()
    with pytest.raises(ValueError, match="^some parameters appear in more than one parameter group$"):
        torch.optim.AdamW(_module_type_split(m, 0.1))
    torch.optim.AdamW(_module_type_split(models.TinyLM(), 0.1))  # the same rule is fine untied

    groups = tying.param_groups(m, 0.1, no_decay=["embed.*", "*.bias"])
    optimizer = torch.optim.AdamW(groups)
    assert [g["param_names"] for g in optimizer.param_groups] == [["proj.weight"], ["embed.weight", "proj.bias"]]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    ids = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(ids) == sorted({id(p) for p in m.parameters()})


@pytest.mark.parametrize(("rule", "decayed"), [(["embed.*"], False), (["head.*"], True)])
def test_a_tie_group_decays_iff_its_source_would(models, rule, decayed) -> None:
    m = models.HeadFirstLM()
    tying.tie(m, "embed.weight", "head.weight")
    decay, exempt = tying.param_groups(m, 0.5, no_decay=rule)
    assert (decay if decayed else exempt)["param_names"] == ["embed.weight"]
    assert (exempt if decayed else decay)["params"] == []


def test_default_rule_exempts_biases_and_gains_and_leaves_out_frozen(models) -> None:
    m = models.Stack(n=2)
    tying.tie(m, "layers.0.weight", "layers.1.weight")
    m.layers[1].bias.requires_grad_(False)
    decay, exempt = tying.param_groups(m, 0.01)
    assert decay == {"params": [m.layers[0].weight], "param_names": ["layers.0.weight"], "weight_decay": 0.01}
    assert exempt["param_names"] == ["layers.0.bias", "norm.weight", "norm.bias"]
    assert exempt["weight_decay"] == 0.0


def test_a_predicate_rule_sees_the_canonical_path_and_the_parameter(models) -> None:
    m = models.tied_lm()
    seen = []
    tying.param_groups(m, 0.1, no_decay=lambda path, p: seen.append((path, tuple(p.shape))) or False)
    assert seen == [("embed.weight", (11, 4)), ("proj.weight", (4, 4)), ("proj.bias", (4,))]
    assert tying.param_groups(m, 0.1, no_decay="proj.*")[1]["param_names"] == ["proj.weight", "proj.bias"]


def test_the_shared_matrix_is_decayed_exactly_once_per_step(models) -> None:
    m = models.tied_lm()
    before = m.embed.weight.detach().clone()
    optimizer = torch.optim.SGD(tying.param_groups(m, 0.5, no_decay=[]), lr=1.0)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # p <- p - lr * wd * p, once: p / 2
    assert torch.equal(m.head.weight, before * 0.5)
    assert optimizer.state_dict()["param_groups"][0]["param_names"] == ["embed.weight", "proj.weight", "proj.bias"]


# --------------------------------------------------------------------------- count_parameters


def test_count_parameters_unique_and_per_path(models) -> None:
    lm = models.tied_lm()  # embed 11x4 (= head), proj 4x4 + 4
    assert tying.count_parameters(lm) == 44 + 16 + 4
    assert tying.count_parameters(lm, unique=False) == 2 * 44 + 16 + 4
    assert tying.count_parameters(lm) == sum(p.numel() for p in tying.unique_parameters(lm).values())
    assert tying.count_parameters(lm, unique=False) == sum(t.numel() for t in lm.state_dict().values())

    s2s = models.Seq2Seq()
    tying.tie(s2s, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    assert (tying.count_parameters(s2s), tying.count_parameters(s2s, unique=False)) == (36, 108)

    ae = models.tied_ae()  # enc 3x6 + 3, dec (reads enc^T) + 6
    assert (tying.count_parameters(ae), tying.count_parameters(ae, unique=False)) == (27, 45)


def test_views_count_once_though_the_optimizer_sees_two_parameters(models) -> None:
    m = models.TinyLM()
    m.head.weight = nn.Parameter(m.embed.weight.data)  # a "fake tie": one memory, two Parameters
    counts = tying.summary(m)
    assert tying.count_parameters(m) == counts.unique_parameters == 44 + 16 + 4
    assert sum(p.numel() for p in tying.unique_parameters(m).values()) == 2 * 44 + 16 + 4


# --------------------------------------------------------------------------- weight-normalized groups


def test_a_weight_normalized_group_gives_g_and_v_once_each(models) -> None:
    m = models.HeadFirstLM()  # the output layer registered first: named_parameters says head.*
    tying.tie(m, "embed.weight", "head.weight")
    tying.weight_norm(m, "embed.weight")
    plist = m.embed.parametrizations.weight
    g, v = plist.original0, plist.original1
    params = tying.unique_parameters(m)
    assert list(params) == ["embed.parametrizations.weight.original0", "embed.parametrizations.weight.original1"]
    assert list(params.values()) == [g, v]

    decay, exempt = tying.param_groups(m, 0.1, no_decay=["*.original0"])  # decay v, not the gain g
    assert (decay["param_names"], exempt["param_names"]) == (["embed.parametrizations.weight.original1"], ["embed.parametrizations.weight.original0"])
    assert decay["params"] == [v] and exempt["params"] == [g]
    torch.optim.AdamW([decay, exempt])  # each Parameter in one group, once

    assert tying.count_parameters(m) == g.numel() + v.numel() == sum(p.numel() for p in params.values())
    assert tying.count_parameters(m, unique=False) == 2 * (g.numel() + v.numel()) == sum(t.numel() for t in m.state_dict().values())
