"""tying.models.WideDeep: the item table shared by the candidate and the history bag is one tie
group with exactly those paths, parameter counts follow the formula, summary / save / load /
resize_vocab work on it, and bad inputs are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tying
from tying.models.wide_deep import Ratings, WideDeep, WideDeepConfig, parameter_count

SMALL = {"vocab_size": 11, "num_users": 5, "num_genres": 3, "embedding_dim": 4, "genre_dim": 2, "hidden": 8, "history": 3, "wide_buckets": 50}


def model(**changes: object) -> WideDeep:
    torch.manual_seed(0)
    return WideDeep(WideDeepConfig(**{**SMALL, **changes}))  # type: ignore[arg-type]


def batch(**changes: torch.Tensor) -> Ratings:
    x = Ratings(
        user=torch.tensor([0, 4, 2]),
        item=torch.tensor([1, 10, 3]),
        history=torch.tensor([[0, 0, 2], [3, 4, 5], [0, 0, 0]]),
        genres=torch.tensor([[1, 0], [2, 3], [3, 0]]),
        year=torch.tensor([0.1, -0.2, 0.0]),
        wide=torch.tensor([[1, 2, 0], [4, 5, 49], [7, 0, 0]]),
    )
    return x._replace(**changes)


def test_shared_tables_are_one_tie_group_of_exactly_the_item_and_history_paths() -> None:
    shared = model()
    assert [t.describe() for t in tying.get_spec(shared).ties] == ["item.weight -> history.weight"]
    assert shared.history.weight is shared.item.weight
    assert [g.paths for g in tying.find_ties(shared)] == [["item.weight", "history.weight"]]
    tying.verify(shared)
    separate = model(shared=False)
    assert not tying.get_spec(separate).ties and not tying.find_ties(separate)
    assert separate.history.weight is not separate.item.weight


def test_the_history_gradient_reaches_the_candidate_table() -> None:
    shared = model(parts="deep")
    shared(batch(item=torch.tensor([1, 1, 1]))).sum().backward()
    grad = shared.item.weight.grad
    assert grad is not None and grad[5].abs().sum() > 0  # item 5 only ever appears in a history
    assert torch.equal(grad[0], torch.zeros(4))  # the padding row gets nothing


@pytest.mark.parametrize("parts", ["wide_deep", "wide", "deep"])
@pytest.mark.parametrize("shared", [True, False])
def test_parameter_counts_follow_the_formula(parts: str, shared: bool) -> None:
    m = model(parts=parts, shared=shared)
    c = m.config
    assert tying.summary(m).unique_parameters == parameter_count(c) == sum(p.numel() for p in m.parameters())
    d, h = c.embedding_dim, c.hidden
    wide = c.wide_buckets + 1
    deep = c.num_users * d + (1 if shared else 2) * c.vocab_size * d + (c.num_genres + 1) * c.genre_dim
    deep += (3 * d + c.genre_dim + 1) * h + h + h * h + h + h + 1  # two hidden layers and the output
    assert parameter_count(c) == {"wide_deep": wide + deep, "wide": wide, "deep": deep}[parts]
    if parts != "wide":
        sharing = tying.summary(model(parts=parts, shared=True))
        assert sharing.total_parameters - sharing.unique_parameters == c.vocab_size * d


def test_the_summary_names_the_shared_table() -> None:
    text = str(tying.summary(model()))
    assert "item.weight, history.weight  11x4" in text


def test_save_then_load_into_a_fresh_model_gives_identical_scores(tmp_path: Path) -> None:
    trained = model()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    tying.save(trained, tmp_path / "wd.safetensors")
    fresh = model()
    tying.load(fresh, tmp_path / "wd.safetensors")
    assert fresh.history.weight is fresh.item.weight
    assert torch.equal(fresh(batch()), trained(batch()))


def test_resize_vocab_adds_items_to_the_shared_table_and_the_config() -> None:
    m = model()
    before = m(batch())
    result = tying.resize_vocab(m, 14)
    assert [r.paths for r in result.parameters] == [("item.weight", "history.weight")]
    assert m.config.vocab_size == 14 and m.item.num_embeddings == m.history.num_embeddings == 14
    assert m.history.weight is m.item.weight and m.history.padding_idx == 0
    assert torch.equal(m(batch()), before)  # the old items score as before
    m(batch(item=torch.tensor([13, 12, 11])))  # the new items are known now
    tying.verify(m)


def test_resize_vocab_of_separate_tables_names_both_paths() -> None:
    m = model(shared=False)
    with pytest.raises(ValueError, match="cannot tell which embedding of WideDeep holds the vocabulary: none is tied"):
        tying.resize_vocab(m, 12)
    tying.resize_vocab(m, 12, paths=["item.weight", "history.weight"])
    assert m.config.vocab_size == m.item.num_embeddings == m.history.num_embeddings == 12


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"user": torch.tensor([0, 5, 1])}, "user id 5 is unknown: the model knows user ids 0 to 4"),
        ({"user": torch.tensor([0, -1, 1])}, "user id -1 is unknown: the model knows user ids 0 to 4"),
        ({"item": torch.tensor([1, 11, 2])}, "item id 11 is unknown: the model knows item ids 1 to 10"),
        ({"item": torch.tensor([1, 0, 2])}, "item id 0 is unknown: the model knows item ids 1 to 10"),
        ({"history": torch.tensor([[0, 0, 2], [3, 4, 12], [0, 0, 0]])}, "history id 12 is unknown: the model knows history ids 0 to 10"),
        ({"genres": torch.tensor([[1, 0], [2, 4], [3, 0]])}, "genres id 4 is unknown: the model knows genres ids 0 to 3"),
        ({"wide": torch.tensor([[1, 2, 0], [4, 5, 50], [7, 0, 0]])}, "wide id 50 is unknown: the model knows wide ids 0 to 49"),
        ({"history": torch.zeros(3, 4, dtype=torch.long)}, r"history has shape \[3, 4\]; the model takes \(batch, L\) with L <= history = 3"),
    ],
)
def test_bad_inputs_are_refused_naming_the_field(changes: dict[str, torch.Tensor], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model()(batch(**changes))


def test_a_shorter_history_is_fine() -> None:
    m = model()
    short = batch(history=torch.tensor([[2], [5], [0]]))
    assert m(short).shape == (3,)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"embedding_dim": 0}, "embedding_dim must be >= 1, got 0"), ({"parts": "both"}, "parts must be 'wide_deep', 'wide' or 'deep', got 'both'")],
)
def test_bad_configs_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WideDeepConfig(**{**SMALL, **changes})  # type: ignore[arg-type]
