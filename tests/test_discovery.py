"""find_ties (against accelerate's find_tied_parameters, plus what it misses) and summary."""

from __future__ import annotations

import re

import pytest
import torch
from accelerate.utils import find_tied_parameters
from torch import nn

import tying
from tying import TieMember

# --------------------------------------------------------------------------- models


def _hand_tied_lm(models):
    m = models.TinyLM()
    m.head.weight = m.embed.weight  # nanoGPT-style
    return m


def _declared_lm(models):
    m = models.TinyLM()
    tying.tie(m, "embed.weight", "head.weight")
    return m


def _three_way(models):
    m = models.Seq2Seq()
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    return m


def _modulelist_shared_module(models):
    shared = nn.Linear(4, 4)
    m = nn.Module()
    m.layers = nn.ModuleList([shared, nn.Linear(4, 4), shared, shared])  # ALBERT-style: one layer, reused
    return m


def _two_groups(models):
    m = models.Stack(n=5)
    tying.tie(m, "layers.3.weight", "layers.1.weight", "layers.4.weight")
    m.layers[2].bias = m.layers[0].bias  # hand tie
    return m


def _untied(models):
    return models.TinyLM()


MODELS = [_hand_tied_lm, _declared_lm, _three_way, _modulelist_shared_module, _two_groups, _untied]


def _as_sets(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(g) for g in groups}


# --------------------------------------------------------------------------- find_ties


@pytest.mark.parametrize("make", MODELS, ids=lambda f: f.__name__.strip("_"))
def test_find_ties_matches_accelerate(models, make) -> None:
    m = make(models)
    ours = tying.find_ties(m)
    theirs = find_tied_parameters(m)
    assert _as_sets([g.paths for g in ours]) == _as_sets(theirs)
    for g in ours:
        assert g.kind == "shared"
        assert all(member.via == "parameter" for member in g.members)
        first = m.get_parameter(g.members[0].state_key)
        assert all(m.get_parameter(member.state_key) is first for member in g.members)
        assert g.numel == first.numel() and g.nbytes == first.numel() * first.element_size()


def test_find_ties_expected_groups(models) -> None:
    assert [g.paths for g in tying.find_ties(_three_way(models))] == [
        ["encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight"]
    ]
    assert [g.paths for g in tying.find_ties(_modulelist_shared_module(models))] == [
        ["layers.0.weight", "layers.2.weight", "layers.3.weight"],
        ["layers.0.bias", "layers.2.bias", "layers.3.bias"],
    ]
    # Groups ordered by their first path in named_parameters order, members likewise.
    assert [g.paths for g in tying.find_ties(_two_groups(models))] == [
        ["layers.0.bias", "layers.2.bias"],
        ["layers.1.weight", "layers.3.weight", "layers.4.weight"],
    ]


def test_find_ties_transposed(models) -> None:
    ae = models.AutoEncoder(d=6, h=3)
    tying.tie_transposed(ae, "enc.weight", "dec.weight")
    (group,) = tying.find_ties(ae)
    assert group.kind == "shared"
    assert group.members == (
        TieMember("enc.weight", "enc.weight", (3, 6), "parameter"),
        TieMember("dec.weight", "dec.parametrizations.weight.original", (6, 3), "transpose"),
    )
    assert group.numel == 18 and group.nbytes == 18 * 4


@pytest.mark.parametrize(
    ("make", "via", "shape"),
    [
        (lambda w: nn.Parameter(w.data), "view", (4, 4)),
        (lambda w: nn.Parameter(w.data.t()), "transposed view", (4, 4)),
        (lambda w: nn.Parameter(w.data[1:3]), "overlapping view", (2, 4)),
        (lambda w: nn.Parameter(w.data.view(16)), "overlapping view", (16,)),
    ],
    ids=["view", "transposed-view", "slice", "reshape"],
)
def test_find_ties_storage_views_that_accelerate_misses(models, make, via, shape) -> None:
    m = models.Stack(n=2)
    m.layers[1].weight = make(m.layers[0].weight)
    assert find_tied_parameters(m) == []
    (group,) = tying.find_ties(m)
    assert group.kind == "storage"
    assert group.paths == ["layers.0.weight", "layers.1.weight"]
    assert [mem.via for mem in group.members] == ["parameter", via]
    assert group.members[1].shape == shape
    assert group.nbytes == 16 * 4  # the memory both cover, counted once
    assert group.numel == 16


def test_find_ties_transposed_view_of_rectangular_weight(models) -> None:
    ae = models.AutoEncoder(d=6, h=3)
    ae.dec.weight = nn.Parameter(ae.enc.weight.data.t())  # a "fake" transposed tie: same memory
    (group,) = tying.find_ties(ae)
    assert [(m.path, m.via, m.shape) for m in group.members] == [
        ("enc.weight", "parameter", (3, 6)),
        ("dec.weight", "transposed view", (6, 3)),
    ]


def test_find_ties_disjoint_slices_of_one_storage_are_not_tied() -> None:
    base = torch.randn(4, 3)
    m = nn.Module()
    m.a = nn.Parameter(base[:2])
    m.b = nn.Parameter(base[2:])
    m.c = nn.Parameter(base[1:3])  # overlaps both: joins them into one group
    assert [g.paths for g in tying.find_ties(m)] == [["a", "b", "c"]]
    del m.c
    assert tying.find_ties(m) == []


def test_find_ties_is_deterministic(models) -> None:
    m = _two_groups(models)
    m.layers[0].weight = nn.Parameter(m.layers[2].weight.data[:2])
    first = tying.find_ties(m)
    assert all(tying.find_ties(m) == first for _ in range(3))
    assert [g.paths[0] for g in first] == ["layers.0.weight", "layers.0.bias", "layers.1.weight"]


def test_find_ties_meta_device_identity_only(models) -> None:
    with torch.device("meta"):
        m = _hand_tied_lm(models)
        ae = models.AutoEncoder()
        tying.tie_transposed(ae, "enc.weight", "dec.weight")
        distinct = models.Stack(n=3)
    assert [g.paths for g in tying.find_ties(m)] == [["embed.weight", "head.weight"]]
    assert [[mem.via for mem in g.members] for g in tying.find_ties(ae)] == [["parameter", "transpose"]]
    assert tying.find_ties(distinct) == []  # distinct meta tensors are never "views" of each other
    assert tying.summary(m).unique_parameters == sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------- summary


@pytest.mark.parametrize("make", MODELS, ids=lambda f: f.__name__.strip("_"))
def test_summary_counts(models, make) -> None:
    m = make(models)
    s = tying.summary(m)
    total = sum(p.numel() for _, p in m.named_parameters(remove_duplicate=False))
    unique = sum(p.numel() for p in m.parameters())
    assert s.total_parameters == total
    assert s.unique_parameters == unique
    assert s.total_bytes == total * 4 and s.unique_bytes == unique * 4
    assert s.bytes_saved == (total - unique) * 4
    groups = tying.find_ties(m)
    assert len(s.rows) == len(groups)
    for row, g in zip(s.rows, groups, strict=True):
        assert list(row.paths) == g.paths
        assert row.numel == g.numel
        assert row.bytes_saved == (len(g.members) - 1) * g.nbytes


def test_summary_three_way_numbers(models) -> None:
    s = tying.summary(_three_way(models))  # 3 x (9 x 4) floats, stored once
    assert (s.total_parameters, s.unique_parameters, s.bytes_saved) == (108, 36, 72 * 4)
    assert s.rows[0].shape == (9, 4)


def test_summary_transposed_and_views(models) -> None:
    ae = models.AutoEncoder(d=6, h=3)
    tying.tie_transposed(ae, "enc.weight", "dec.weight")
    s = tying.summary(ae)
    assert s.total_parameters == 18 + 3 + 18 + 6
    assert s.unique_parameters == 18 + 3 + 6 == sum(p.numel() for p in ae.parameters())
    assert s.rows[0].vias == ("parameter", "transpose")

    m = models.Stack(n=2)
    m.layers[1].weight = nn.Parameter(m.layers[0].weight.data[1:3])  # 8 of the 16 floats
    s = tying.summary(m)
    # Overlapping memory counted once, although parameters() yields both objects.
    assert s.unique_parameters == sum(p.numel() for p in m.parameters()) - 8
    assert s.bytes_saved == 8 * 4
    assert s.rows[0].numel == 16


def test_summary_str_is_an_aligned_table(models) -> None:
    m = _two_groups(models)
    ae_like = models.AutoEncoder()
    tying.tie_transposed(ae_like, "enc.weight", "dec.weight")
    m.ae = ae_like
    text = str(tying.summary(m))
    lines = text.splitlines()
    header, rule, *rest = lines
    assert re.fullmatch(r"group  paths\s+shape\s+numel\s+saved", header)
    assert set(rule) <= {"-", " "}
    # Column extents from the dashed rule: every cell lies within its column.
    columns = [(mt.start(), mt.end()) for mt in re.finditer(r"-+", rule)]
    assert len(columns) == 5
    body = rest[: rest.index("")]
    assert len(body) == 3
    for line in [header, *body]:
        for (_, end), (start, _) in zip(columns, columns[1:]):
            assert line[end:start] == "  ", line  # the gap between two columns is blank
        for c in (0, 3, 4):  # right-aligned: group, numel, saved
            lo, hi = columns[c]
            assert line[hi - 1] != " ", line
    assert body[0].split()[0] == "1" and body[2].split()[0] == "3"
    assert "ae.dec.weight (transpose)" in text
    assert "layers.0.bias, layers.2.bias" in body[0]
    s = tying.summary(m)
    assert f"parameters (with duplicates, as in state_dict): {s.total_parameters:,}" in text
    assert f"unique parameters:                              {s.unique_parameters:,}" in text
    assert text.splitlines()[-1].startswith("bytes saved by tying:")


def test_summary_str_without_ties(models) -> None:
    text = str(tying.summary(models.TinyLM()))
    assert text.splitlines()[0] == "no tied parameters"
    assert "bytes saved by tying:                           0 B" in text
