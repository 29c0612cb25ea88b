"""The reflection tie ``C = W diag(s)`` (Assylbekov & Takhanov 2019, arXiv 1902.09859) through its
whole life: declaring it (and every refusal, by message), exact values and one gradient leaf,
assignment through the target, discovery, save / load (the signs in the header, W stored once),
``tying inspect``, materialize, resize, untie, chains and weight normalization."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

import tying
from tying import Reflect, Tie, TieError, TieSpec
from tying.cli.main import app

SIGNS = (1, -1, -1, 1)


class SGNS(nn.Module):
    """Skip-gram's two tables: word vectors W and context vectors C."""

    def __init__(self, vocab: int = 10, dim: int = 4) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab, dim)
        self.contexts = nn.Embedding(vocab, dim)


def _reflected(vocab: int = 10, signs: tuple[int, ...] = SIGNS) -> SGNS:
    torch.manual_seed(0)
    m = SGNS(vocab, len(signs))
    tying.tie_reflected(m, "words.weight", "contexts.weight", signs)
    return m


def _holds(m: SGNS, signs: tuple[int, ...] = SIGNS) -> None:
    assert m.contexts.parametrizations.weight.original is m.words.weight
    assert torch.equal(m.contexts.weight, m.words.weight * torch.tensor(signs, dtype=m.words.weight.dtype))
    tying.verify(m)


def _score(m: SGNS, words: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
    return nn.functional.logsigmoid((m.words(words) * m.contexts(contexts)).sum(-1)).sum()


# --------------------------------------------------------------------------- the transform


def test_half_negative_draws_exactly_half_the_signs_negative_from_the_seed() -> None:
    r = Reflect.half_negative(7, seed=3)
    assert len(r.signs) == 7 and r.signs.count(-1) == 3 and set(r.signs) <= {1, -1}
    assert Reflect.half_negative(7, seed=3).signs == r.signs  # the seed decides the positions
    assert len({Reflect.half_negative(64, seed=s).signs for s in range(4)}) == 4
    assert Reflect.half_negative(1).signs == (1,)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match=r"^Reflect\.half_negative needs a positive int dimension, got "):
            Reflect.half_negative(bad)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(dim=st.integers(1, 300), seed=st.integers(0, 2**31))
def test_half_negative_property(dim: int, seed: int) -> None:
    signs = Reflect.half_negative(dim, seed=seed).signs
    assert len(signs) == dim and signs.count(-1) == dim // 2 and signs.count(1) == dim - dim // 2


@pytest.mark.parametrize(
    ("signs", "message"),
    [
        ([], r"^a reflection needs at least one sign; got an empty sign vector$"),
        ([1, -1, 0], r"^sign 2 is 0; every sign must be the int 1 or -1$"),
        ([1, 2], r"^sign 1 is 2; every sign must be the int 1 or -1$"),
        ([-1, 1.0], r"^sign 1 is 1\.0; every sign must be the int 1 or -1$"),
        ([True, -1], r"^sign 0 is True; every sign must be the int 1 or -1$"),
        (torch.tensor([1.0, -1.0]), r"^sign 0 is 1\.0; every sign must be the int 1 or -1$"),
        (torch.ones(2, 2, dtype=torch.int64), r"^signs must be one-dimensional, got a tensor of shape \[2, 2\]$"),
    ],
)
def test_signs_are_validated(signs: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Reflect(signs)  # type: ignore[arg-type]


def test_signs_are_plain_ints_never_module_state() -> None:
    r = Reflect(torch.tensor([1, -1, -1]))
    assert r.signs == (1, -1, -1) and all(type(s) is int for s in r.signs)
    assert r.params() == {"signs": [1, -1, -1]} and dict(r.state_dict()) == {} and list(r.parameters()) == []
    assert repr(r) == "Reflect(3 signs, 2 of them -1)" and r.label() == "reflect (2 of 3 signs -1)"
    assert Reflect.from_params(r.params()).signs == r.signs


def test_spec_parameters_are_validated_by_name() -> None:
    entry = {"source": "a.weight", "target": "b.weight", "transform": "reflect", "params": {"signs": [1, 5]}}
    with pytest.raises(ValueError, match=r"entry 0: bad parameters for transform 'reflect': sign 1 is 5; every sign"):
        TieSpec.from_dict({"version": 2, "ties": [entry]})
    with pytest.raises(ValueError, match=r"entry 0: .*transform 'reflect' takes one parameter, 'signs'; got \['scale', 'signs'\]"):
        TieSpec.from_dict({"version": 2, "ties": [{**entry, "params": {"signs": [1], "scale": 2}}]})
    with pytest.raises(ValueError, match=r"entry 0: .*'signs' must be a list of 1 and -1, got str"):
        TieSpec.from_dict({"version": 2, "ties": [{**entry, "params": {"signs": "+-"}}]})
    with pytest.raises(ValueError, match=r"entry 0: .*empty sign vector"):
        TieSpec.from_dict({"version": 2, "ties": [{**entry, "params": {"signs": []}}]})


# --------------------------------------------------------------------------- declaring, values, gradients


def test_tie_records_the_signs_and_summary_and_discovery_show_it() -> None:
    m = _reflected()
    _holds(m)
    (t,) = tying.get_spec(m).ties
    assert t == Tie("words.weight", "contexts.weight", "reflect", (("signs", SIGNS),))
    assert t.describe() == "words.weight -[reflect]-> contexts.weight"
    assert "contexts.weight (reflect)" in str(tying.summary(m))
    (group,) = tying.find_ties(m)
    assert [(p.path, p.via) for p in group.members] == [("words.weight", "parameter"), ("contexts.weight", "reflect")]
    assert list(m.state_dict()) == ["words.weight", "contexts.parametrizations.weight.original"]
    assert [n for n, _ in m.named_parameters()] == ["words.weight"]
    tying.tie_reflected(m, "words.weight", "contexts.weight", Reflect(SIGNS))  # the same declaration: a no-op
    assert len(tying.get_spec(m).ties) == 1


def test_refusals_name_the_paths_and_lengths() -> None:
    m = SGNS()
    with pytest.raises(TieError, match=(
        r"^cannot tie 'contexts\.weight' to the reflect of 'words\.weight' \(shape \[10, 4\]\): "
        r"3 signs for a last dimension of length 4; there must be one sign per column$"
    )):
        tying.tie_reflected(m, "words.weight", "contexts.weight", [1, -1, 1])
    with pytest.raises(ValueError, match=r"^sign 1 is 0; every sign"):
        tying.tie_reflected(m, "words.weight", "contexts.weight", [1, 0, 1, 1])
    with pytest.raises(ValueError, match=r"^a reflection needs at least one sign"):
        tying.tie_reflected(m, "words.weight", "contexts.weight", [])
    m.scale = nn.Parameter(torch.tensor(2.0))
    m.other = nn.Parameter(torch.tensor(3.0))
    with pytest.raises(TieError, match=r"^tie_reflected needs a source with at least 1 dimension; 'scale' has shape \[\]$"):
        tying.tie_reflected(m, "scale", "other", [1])
    tying.tie_reflected(m, "words.weight", "contexts.weight", SIGNS)
    with pytest.raises(TieError, match=r"'contexts\.weight' is already tied to 'words\.weight' \(reflect\)"):
        tying.tie_reflected(m, "words.weight", "contexts.weight", [1, 1, 1, 1])
    assert tying.get_spec(m).ties[0].params == (("signs", SIGNS),)


@settings(max_examples=30, deadline=None)
@given(
    vocab=st.integers(1, 12),
    signs=st.lists(st.sampled_from([1, -1]), min_size=1, max_size=12),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
)
def test_values_and_gradients_are_exact(vocab: int, signs: list[int], dtype: torch.dtype) -> None:
    torch.manual_seed(vocab)
    m = SGNS(vocab, len(signs)).to(dtype)
    tying.tie_reflected(m, "words.weight", "contexts.weight", signs)
    s = torch.tensor(signs, dtype=dtype)
    assert torch.equal(m.contexts.weight, m.words.weight * s)
    words, contexts = torch.randint(vocab, (5,)), torch.randint(vocab, (5,))
    # The same computation untied: two leaves holding W and W s.
    w = m.words.weight.detach().clone().requires_grad_()
    c = (w * s).detach().requires_grad_()
    ref = nn.functional.logsigmoid((nn.functional.embedding(words, w) * nn.functional.embedding(contexts, c)).sum(-1)).sum()
    ref.backward()
    _score(m, words, contexts).backward()
    assert [n for n, p in m.named_parameters() if p.grad is not None] == ["words.weight"]
    assert m.words.weight.grad is not None and w.grad is not None and c.grad is not None
    assert torch.equal(m.words.weight.grad, w.grad + c.grad * s)  # both uses reach one leaf, exactly


def test_an_optimizer_step_keeps_the_tie() -> None:
    m = _reflected()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    before = m.words.weight.detach().clone()
    (-_score(m, torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]))).backward()
    opt.step()
    assert not torch.equal(m.words.weight, before)
    _holds(m)
    assert tying.count_parameters(m) == 10 * 4


def test_assignment_through_the_target_writes_the_reflection_into_the_source() -> None:
    m = _reflected()
    c = torch.randn(10, 4)
    with torch.no_grad():
        m.contexts.weight = c
    assert torch.equal(m.contexts.weight, c)
    assert torch.equal(m.words.weight, c * torch.tensor(SIGNS, dtype=torch.float32))
    _holds(m)


# --------------------------------------------------------------------------- files


def test_save_stores_w_once_with_the_signs_in_the_header_and_load_restores_the_tie(tmp_path: Path) -> None:
    signs = Reflect.half_negative(6, seed=1).signs
    m = _reflected(signs=signs)
    path = tying.save(m, tmp_path / "sgns.safetensors")
    info = tying.read_checkpoint(path)
    header = json.loads(info.metadata["tying"])
    assert header["ties"] == [
        {"source": "words.weight", "target": "contexts.weight", "transform": "reflect", "params": {"signs": list(signs)}}
    ]
    assert [(t.name, t.shape) for t in info.tensors] == [("words.weight", (10, 6))]
    assert path.stat().st_size == 8 + info.header_size + 10 * 6 * 4  # no second tensor
    fresh = SGNS(10, 6)  # untied
    result = tying.load(fresh, path)
    assert result.applied_ties == tying.get_spec(m).ties
    _holds(fresh, signs)
    assert torch.equal(fresh.words.weight, m.words.weight)


def test_inspect_shows_the_reflection(tmp_path: Path) -> None:
    path = tying.save(_reflected(), tmp_path / "sgns.safetensors")
    result = CliRunner().invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1 declared tie group" in result.output and "1 stored tensor" in result.output
    assert "reflect (2 of 4 signs -1)" in result.output


def test_a_state_dict_of_an_untied_model_loads_when_it_holds_the_reflection() -> None:
    m = _reflected()
    untied = SGNS()
    untied.load_state_dict({"words.weight": m.words.weight.detach(), "contexts.weight": m.contexts.weight.detach()})
    m2 = _reflected()
    with torch.no_grad():
        m2.words.weight.zero_()
    m2.load_state_dict(untied.state_dict())
    _holds(m2)
    assert torch.equal(m2.words.weight, m.words.weight)
    with torch.no_grad():
        untied.contexts.weight.neg_()
    with pytest.raises(TieError, match=r"different values for 'contexts\.weight' and the reflect of 'words\.weight'"):
        m2.load_state_dict(untied.state_dict())


def test_materialize_from_meta_keeps_the_tie() -> None:
    with torch.device("meta"):
        m = SGNS()
    tying.tie_reflected(m, "words.weight", "contexts.weight", SIGNS)
    tying.materialize(m, "cpu")
    assert m.words.weight.device.type == "cpu"
    _holds(m)


# --------------------------------------------------------------------------- resize, untie


def test_resize_vocab_keeps_the_tie_and_refuses_the_last_dimension() -> None:
    m = _reflected()
    before = m.contexts.weight.detach().clone()
    result = tying.resize_vocab(m, 13)
    assert result.parameters[0].paths == ("words.weight", "contexts.weight")
    assert m.contexts.weight.shape == (13, 4) and m.contexts.num_embeddings == 13
    assert torch.equal(m.contexts.weight[:10], before)
    _holds(m)
    with pytest.raises(TieError, match=(
        r"^cannot resize 'contexts\.weight' \(for 'words\.weight'\) along dimension 1 of the Parameter it reads reflected: "
        r"its reflect cannot follow that dimension; untie it first$"
    )):
        tying.resize_vocab(m, 6, paths={"words.weight": 1})
    _holds(m)


def test_untie_gives_an_independent_copy_of_w_d() -> None:
    m = _reflected()
    read = m.contexts.weight.detach().clone()
    tying.untie(m, "contexts.weight")
    assert tying.get_spec(m).ties == [] and isinstance(m.contexts.weight, nn.Parameter)
    assert torch.equal(m.contexts.weight, read)
    with torch.no_grad():
        m.words.weight.add_(1.0)
    assert torch.equal(m.contexts.weight, read)


# --------------------------------------------------------------------------- composing


def test_chains_resolve_to_the_root_and_a_reflected_target_is_no_source() -> None:
    m = SGNS()
    m.extra = nn.Embedding(10, 4)
    tying.tie(m, "words.weight", "extra.weight")
    tying.tie_reflected(m, "extra.weight", "contexts.weight", SIGNS)  # extra is a plain target: its source
    assert tying.get_spec(m).source_of("contexts.weight") == Tie("words.weight", "contexts.weight", "reflect", (("signs", SIGNS),))
    _holds(m)
    m.more = nn.Embedding(10, 4)
    with pytest.raises(TieError, match=(
        r"^cannot tie from 'contexts\.weight': it is itself the reflect of 'words\.weight'; name 'words\.weight' as the source instead$"
    )):
        tying.tie_reflected(m, "contexts.weight", "more.weight", SIGNS)
    with pytest.raises(TieError, match=r"^'words\.weight' is the source of a tie group"):
        tying.tie_reflected(m, "more.weight", "words.weight", SIGNS)


def test_reflection_beside_transpose_and_weight_norm_of_the_group(tmp_path: Path) -> None:
    def build() -> SGNS:
        torch.manual_seed(0)
        m = SGNS()
        m.dec = nn.Linear(10, 4, bias=False)
        tying.tie_reflected(m, "words.weight", "contexts.weight", SIGNS)
        tying.tie_transposed(m, "words.weight", "dec.weight")
        tying.weight_norm(m, "words.weight", dim=0)
        return m

    m = build()
    s = torch.tensor(SIGNS, dtype=torch.float32)
    assert torch.equal(m.contexts.weight, m.words.weight * s)  # the reflection of the normalized weight
    assert torch.equal(m.dec.weight, m.words.weight.T)
    tying.verify(m)
    _score(m, torch.tensor([0, 1]), torch.tensor([2, 3])).backward()
    assert [n for n, p in m.named_parameters() if p.grad is not None] == [
        "words.parametrizations.weight.original0",
        "words.parametrizations.weight.original1",
    ]
    path = tying.save(m, tmp_path / "wn.safetensors")
    fresh = build()
    with torch.no_grad():
        for p in fresh.parameters():
            p.mul_(2.0)
    assert not torch.equal(fresh.contexts.weight, m.contexts.weight)
    tying.load(fresh, path)
    tying.verify(fresh)
    assert torch.equal(fresh.contexts.weight, m.contexts.weight)
