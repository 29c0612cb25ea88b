"""Module trees holding None where nn.Module allows it (a ModuleList entry, a ModuleDict value, an
attribute registered as None): every function that walks modules skips the empty slot.
x-transformers keeps unused norms as None in a ModuleList; a pruned stack keeps its place."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import tying
from tying import LayerSharing, TieError


class Block(nn.Module):
    """x-transformers' layout: ``norms`` is ``[pre_norm, None, None]`` (post-branch and post-main
    norms not used), then the branch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(dim), None, None])
        self.branch = nn.Linear(dim, dim)
        self.extra = nn.ModuleDict({"gate": nn.Linear(dim, dim), "skip": None})


class LM(nn.Module):
    def __init__(self, vocab: int = 11, dim: int = 4, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.register_module("pos", None)  # no positional embedding in this configuration
        self.blocks = nn.ModuleList([Block(dim) for _ in range(layers)])
        self.pruned = nn.ModuleList([nn.Linear(dim, dim), None, nn.Linear(dim, dim)])  # layer 1 pruned away
        self.head = nn.Linear(dim, vocab, bias=False)


def tied(**kwargs: int) -> LM:
    torch.manual_seed(0)
    m = LM(**kwargs)
    tying.tie(m, "embed.weight", "head.weight")
    return m


def test_summary_find_ties_verify_and_counts() -> None:
    m = tied()
    per_path = sum(p.numel() for _, p in m.named_parameters(remove_duplicate=False))
    unique = per_path - m.head.weight.numel()
    s = tying.summary(m)
    assert (s.total_parameters, s.unique_parameters, s.sharing) == (per_path, unique, [])
    assert [g.paths for g in tying.find_ties(m)] == [["embed.weight", "head.weight"]]
    assert tying.verify(m, raise_error=False).ok
    assert tying.count_parameters(m) == unique and tying.count_parameters(m, unique=False) == per_path
    assert list(tying.unique_parameters(m))[0] == "embed.weight"
    decayed, exempt = tying.param_groups(m, 0.1)
    assert len(decayed["params"]) + len(exempt["params"]) == len(list(m.parameters()))


def test_share_layers_over_blocks_holding_none_and_summary_reports_it() -> None:
    m = tied()
    sharing = tying.share_layers(m, "blocks", unique=2, strategy="cycle")
    assert sharing == LayerSharing("blocks", (0, 1, 0, 1))
    assert m.blocks[2].branch.weight is m.blocks[0].branch.weight and m.blocks[2].norms[1] is None
    assert tying.layer_sharing(m) == [sharing]
    assert tying.summary(m).sharing == ["blocks: 4 layers over 2 sets (cycle): A B A B"]


def test_share_layers_refuses_a_none_layer_and_changes_nothing(snapshot) -> None:
    m = tied()
    before = snapshot(m)
    with pytest.raises(TieError, match=r"^layer 1 of 'pruned' is None: share_layers gives every layer of the list a parameter set"):
        tying.share_layers(m, "pruned", unique=1)
    before.assert_unchanged(m)


def test_save_load_materialize_and_resize(tmp_path: Path) -> None:
    m = tied()
    path = tying.save(m, tmp_path / "m.safetensors")
    fresh = LM()
    tying.load(fresh, path)
    assert fresh.head.weight is fresh.embed.weight and fresh.pos is None and fresh.pruned[1] is None
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), m.state_dict().values(), strict=True))

    with torch.device("meta"):
        meta = LM()
    tying.tie(meta, "embed.weight", "head.weight")
    tying.materialize(meta, "cpu")
    assert meta.head.weight is meta.embed.weight and not meta.embed.weight.is_meta
    tying.verify(meta)

    tying.resize_vocab(m, 13)
    assert m.head.weight is m.embed.weight and m.embed.weight.shape == (13, 4)
    tying.verify(m)
