"""The skip-gram model (tying.models.SkipGram): its three context tables, the loss and its
gradients against autograd's, the tied tables' single parameter collecting both uses' gradients,
the reflection through save / load / materialize with one stored tensor, and the signs drawn for
a fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import tying
from tying import Reflect, TieError
from tying.models import SGNSConfig, SkipGram, reflection_signs


def _batch(vocab: int, rows: int = 12, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(0, vocab, (rows,), generator=g)
    targets = torch.randint(0, vocab, (rows, 1 + k), generator=g)
    weights = torch.cat([torch.ones(rows, 1), -torch.randint(1, 4, (rows, k), generator=g).float()], 1)
    weights[0, 0] = 0.0  # a padding slot counts for nothing
    return words, targets, weights


def _model(tie: str, vocab: int = 9, dim: int = 6, fraction: float = 0.5) -> SkipGram:
    torch.manual_seed(0)
    m = SkipGram(SGNSConfig(vocab, dim, tie, negative_fraction=fraction))  # type: ignore[arg-type]
    with torch.no_grad():
        m.words.weight.normal_()
        if tie == "none":
            m.contexts.weight.normal_()
    return m


def _reference(m: SkipGram, words: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The loss written plainly: sum |a| * -log sigmoid(sign(a) * w . c)."""
    scores = (m.contexts.weight[targets] * m.words.weight[words].unsqueeze(1)).sum(-1)
    return -(F.logsigmoid(scores * weights.sign()) * weights.abs()).sum()


@pytest.mark.parametrize("tie", ["none", "tied", "reflected"])
def test_loss_and_gradients_match_autograd_of_the_plain_formula(tie: str) -> None:
    m = _model(tie)
    batch = _batch(9)
    loss = m.loss(*batch)
    loss.backward()
    ours = {n: p.grad.to_dense().clone() for n, p in m.named_parameters()}  # type: ignore[union-attr]
    m.zero_grad()
    ref = _reference(m, *batch)
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-5)
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.allclose(ours[n], p.grad.to_dense(), atol=1e-5), n


@pytest.mark.parametrize("tie", ["tied", "reflected"])
def test_a_tied_context_table_is_one_parameter_collecting_both_uses(tie: str) -> None:
    m = _model(tie)
    assert [n for n, _ in m.named_parameters()] == ["words.weight"]
    assert tying.summary(m).unique_parameters == 9 * 6
    words, targets, weights = _batch(9)
    # The gradient through the word rows alone, and through the context rows alone:
    signs = torch.tensor(reflection_signs(6, 0.5)) if tie == "reflected" else torch.ones(6)
    w = m.words.weight.detach().clone().requires_grad_()
    c = m.words.weight.detach().clone().requires_grad_()
    scores = ((c * signs)[targets] * w[words].unsqueeze(1)).sum(-1)
    (-(F.logsigmoid(scores * weights.sign()) * weights.abs()).sum()).backward()
    assert w.grad is not None and c.grad is not None
    m.loss(words, targets, weights).backward()
    assert m.words.weight.grad is not None
    assert torch.allclose(m.words.weight.grad.to_dense(), w.grad + c.grad, atol=1e-5)


def test_untied_tables_get_their_own_gradients_and_word2vec_initialisation() -> None:
    torch.manual_seed(0)
    m = SkipGram(SGNSConfig(50, 8))
    assert m.words.weight.abs().max() <= 0.5 / 8 and not m.contexts.weight.any()
    assert tying.summary(m).unique_parameters == 2 * 50 * 8
    m.loss(*_batch(50)).backward()
    assert m.words.weight.grad is not None and m.contexts.weight.grad is not None
    assert m.words.weight.grad.is_sparse and m.contexts.weight.grad.is_sparse


def test_sgd_steps_keep_the_reflection_exact() -> None:
    m = _model("reflected")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for seed in range(3):
        opt.zero_grad()
        m.loss(*_batch(9, seed=seed)).backward()
        opt.step()
    assert torch.equal(m.contexts.weight, m.words.weight * torch.tensor(reflection_signs(6, 0.5), dtype=torch.float32))


def test_reflection_round_trips_save_load_and_materialize_with_one_stored_tensor(tmp_path: Path) -> None:
    m = _model("reflected", dim=8)
    path = tying.save(m, tmp_path / "sgns.safetensors")
    info = tying.read_checkpoint(path)
    assert [t.name for t in info.tensors] == ["words.weight"]
    assert json.loads(info.metadata["tying"])["ties"][0]["params"] == {"signs": reflection_signs(8, 0.5)}
    fresh = SkipGram(SGNSConfig(9, 8))  # untied: the file's spec re-applies the reflection
    tying.load(fresh, path)
    assert torch.equal(fresh.words.weight, m.words.weight) and torch.equal(fresh.contexts.weight, m.contexts.weight)
    assert [n for n, _ in fresh.named_parameters()] == ["words.weight"]
    with torch.device("meta"):
        meta = SkipGram(SGNSConfig(9, 8, "reflected"))
    tying.materialize(meta, "cpu")
    tying.load(meta, path)
    assert torch.equal(meta.contexts.weight, m.contexts.weight)


def test_a_sign_vector_of_the_wrong_length_is_a_one_line_error() -> None:
    m = SkipGram(SGNSConfig(9, 6))
    with pytest.raises(TieError, match=r"4 signs for a last dimension of length 6") as error:
        tying.tie_reflected(m, "words.weight", "contexts.weight", [1, -1, 1, -1])
    assert "\n" not in str(error.value)


@settings(max_examples=30, deadline=None)
@given(dim=st.integers(1, 64), fraction=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), seed=st.integers(0, 1000))
def test_reflection_signs_have_the_fraction_negative(dim: int, fraction: float, seed: int) -> None:
    signs = reflection_signs(dim, fraction, seed)
    assert len(signs) == dim and set(signs) <= {1, -1} and signs.count(-1) == round(fraction * dim)
    assert signs == reflection_signs(dim, fraction, seed)
    if fraction == 0.5 and dim % 2 == 0:
        assert tuple(signs) == Reflect.half_negative(dim, seed).signs


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"negative_fraction must be in \[0, 1\], got 1.5"):
        SGNSConfig(9, negative_fraction=1.5)
    with pytest.raises(ValueError, match=r"tie must be 'none', 'tied' or 'reflected', got 'half'"):
        SGNSConfig(9, tie="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got -0.1"):
        reflection_signs(4, -0.1)


def test_the_loss_reads_the_reflection_only_while_it_is_declared() -> None:
    m = _model("reflected")
    batch = _batch(9)
    table, signs = m.context_table()
    assert table is m.words.weight and signs is not None and signs.tolist() == reflection_signs(6, 0.5)
    tying.untie(m, "contexts.weight")  # C becomes its own copy of W D
    with torch.no_grad():
        m.contexts.weight.mul_(2.0)
    assert m.context_table() == (m.contexts.weight, None)
    assert torch.allclose(m.loss(*batch), _reference(m, *batch), rtol=1e-5)
