"""A transform with parameters, defined here and added through the registry of
:mod:`tying.transforms` alone, works end to end: tie, verify, summary, gradients, save and load
(its parameters in the header), materialize, resize along the dimensions its shape rule allows,
untie; a file naming a transform this tying does not know is refused by name."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tying
from tying import CheckpointError, Tie, TieError, TieSpec
from tying.core import tie_transformed
from tying.transforms import TRANSFORMS, TieTransform, register, unregister


class Signs(TieTransform):
    """``C = W diag(s)``: a fixed +-1 sign per column (the last dimension) of the source."""

    name = "test_signs"
    adjective = "sign-flipped"
    call = "tie_signs"

    def __init__(self, signs: Sequence[int]) -> None:
        super().__init__()
        self.signs = tuple(int(s) for s in signs)

    def params(self) -> dict[str, Any]:
        return {"signs": list(self.signs)}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Signs:
        signs = params.get("signs")
        if set(params) != {"signs"} or not isinstance(signs, list) or any(s not in (1, -1) for s in signs):
            raise ValueError(f"needs 'signs', a list of +1 and -1; got {dict(params)!r}")
        return cls(signs)

    def mismatch(self, shape: Sequence[int]) -> str | None:
        return None if shape and shape[-1] == len(self.signs) else f"{len(self.signs)} signs for a last dimension of {list(shape)}"

    @classmethod
    def resizable(cls, dim: int, ndim: int) -> bool:
        return dim != ndim - 1  # one sign per column: the columns cannot change

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tensor(self.signs, dtype=x.dtype, device=x.device)

    def right_inverse(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)  # its own inverse


SIGNS = [1, -1, -1, 1]


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    register(Signs)
    try:
        yield
    finally:
        unregister(Signs.name)
    assert Signs.name not in TRANSFORMS


class LM(nn.Module):
    def __init__(self, vocab: int = 10, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab, bias=False)


def _signed_lm(vocab: int = 10) -> LM:
    torch.manual_seed(0)
    m = LM(vocab)
    tie_transformed(m, "embed.weight", "head.weight", Signs(SIGNS))
    return m


def _holds(m: LM) -> None:
    assert m.head.parametrizations.weight.original is m.embed.weight
    assert torch.equal(m.head.weight, m.embed.weight * torch.tensor(SIGNS, dtype=torch.float32))
    tying.verify(m)


def test_tie_verify_summary_and_one_gradient() -> None:
    m = _signed_lm()
    _holds(m)
    (t,) = tying.get_spec(m).ties
    assert t == Tie("embed.weight", "head.weight", "test_signs", (("signs", (1, -1, -1, 1)),))
    assert t.describe() == "embed.weight -[test_signs]-> head.weight"
    assert "head.weight (test_signs)" in str(tying.summary(m))
    (m.head(torch.randn(3, 4)).sum() + m.embed(torch.tensor([1])).sum()).backward()
    assert [n for n, p in m.named_parameters() if p.grad is not None] == ["embed.weight"]


def test_checks_consult_the_transform() -> None:
    m = LM()
    with pytest.raises(TieError, match=r"cannot tie 'head\.weight' to the test_signs of 'embed\.weight' \(shape \[10, 4\]\): 3 signs"):
        tie_transformed(m, "embed.weight", "head.weight", Signs([1, 1, -1]))
    tie_transformed(m, "embed.weight", "head.weight", Signs(SIGNS))
    with pytest.raises(TieError, match=r"'head\.weight' is already tied to 'embed\.weight' \(test_signs\)"):
        tie_transformed(m, "embed.weight", "head.weight", Signs([1, 1, 1, 1]))
    tie_transformed(m, "embed.weight", "head.weight", Signs(SIGNS))  # the same declaration: a no-op


def test_save_load_records_and_reapplies_the_parameters(tmp_path: Path) -> None:
    m = _signed_lm()
    path = tying.save(m, tmp_path / "signs.safetensors")
    header = json.loads(tying.read_checkpoint(path).metadata["tying"])
    assert header["ties"] == [{"source": "embed.weight", "target": "head.weight", "transform": "test_signs", "params": {"signs": SIGNS}}]
    assert [t.name for t in tying.read_checkpoint(path).tensors] == ["embed.weight"]
    fresh = LM()
    result = tying.load(fresh, path)
    assert result.applied_ties == tying.get_spec(m).ties
    _holds(fresh)
    assert torch.equal(fresh.embed.weight, m.embed.weight)
    fresh.load_state_dict(m.state_dict(), assign=True)  # new Parameters: the post-load hook re-ties
    _holds(fresh)


def test_a_file_of_an_unknown_transform_is_refused_by_name(tmp_path: Path) -> None:
    path = tying.save(_signed_lm(), tmp_path / "signs.safetensors")
    unregister(Signs.name)
    try:
        with pytest.raises(CheckpointError, match=r"malformed tying metadata: .*unknown transform 'test_signs'"):
            tying.read_checkpoint(path)
    finally:
        register(Signs)


def test_spec_parameters_are_validated_by_the_transform() -> None:
    entry = {"source": "a.weight", "target": "b.weight", "transform": "test_signs", "params": {"signs": [1, 2]}}
    with pytest.raises(ValueError, match=r"entry 0: bad parameters for transform 'test_signs': needs 'signs'"):
        TieSpec.from_dict({"version": 2, "ties": [entry]})
    with pytest.raises(ValueError, match=r"only a transform takes them"):
        TieSpec.from_dict({"version": 2, "ties": [{**entry, "transform": None}]})
    with pytest.raises(ValueError, match=r"transform 'transpose' takes no parameters"):
        TieSpec.from_dict({"version": 2, "ties": [{**entry, "transform": "transpose"}]})


def test_materialize_keeps_the_tie() -> None:
    with torch.device("meta"):
        m = LM()
    tie_transformed(m, "embed.weight", "head.weight", Signs(SIGNS))
    tying.materialize(m, "cpu")
    assert m.embed.weight.device.type == "cpu"
    _holds(m)


def test_resize_follows_the_shape_rule() -> None:
    m = _signed_lm()
    before = m.head.weight.detach().clone()
    result = tying.resize_vocab(m, 12)
    assert result.parameters[0].paths == ("embed.weight", "head.weight")
    assert m.head.weight.shape == (12, 4) and m.head.out_features == 12
    assert torch.equal(m.head.weight[:10], before)
    _holds(m)
    with pytest.raises(TieError, match=r"cannot resize 'head\.weight' \(for 'embed\.weight'\) along dimension 1 .*sign-flipped"):
        tying.resize_vocab(m, 6, paths={"embed.weight": 1})
    _holds(m)


def test_untie_gives_the_target_what_it_read() -> None:
    m = _signed_lm()
    read = m.head.weight.detach().clone()
    tying.untie(m, "head.weight")
    assert tying.get_spec(m).ties == [] and isinstance(m.head.weight, nn.Parameter)
    assert torch.equal(m.head.weight, read)
