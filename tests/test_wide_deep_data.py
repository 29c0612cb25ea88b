"""The recommender task's data and metrics: histories hold only ratings strictly before the
target's time (a property over random small rating tables), the split follows time per user,
AUC and log loss agree with scikit-learn, and malformed tables are refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tying.tasks.recsys.metrics import auc, binary_metrics, log_loss
from tying.tasks.recsys.movielens import build_examples, hash_ids

pd = pytest.importorskip("pandas")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

GENRES = ["Comedy", "Drama|Romance", "Action|Comedy|Sci-Fi", "(no genres listed)"]


def table(rows: list[tuple[int, int, float, int]]) -> object:
    """A ratings table of ``(userId, movieId, rating, timestamp)`` rows, genres and year by movie."""
    frame = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    frame["genres"] = [GENRES[m % len(GENRES)] for m in frame["movieId"]]
    frame["year"] = [1950.0 + m if m % 5 else float("nan") for m in frame["movieId"]]
    return frame


ratings = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 12), st.sampled_from([0.5, 1.0, 3.5, 4.0, 5.0]), st.integers(0, 6)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(rows=ratings, k=st.integers(1, 5))
def test_a_history_holds_exactly_the_last_k_items_rated_strictly_before_the_target(rows: list[tuple[int, int, float, int]], k: int) -> None:
    data = build_examples(table(rows), history=k, buckets=97, valid_fraction=0.2, test_fraction=0.2)
    users = sorted({r[0] for r in rows})
    items = sorted({r[1] for r in rows})
    seen = 0
    for split in (data.train, data.valid, data.test):
        for n in range(len(split)):
            user = users[int(split.x.user[n])]
            time = int(split.time[n])
            before = sorted((t, m) for u, m, _, t in rows if u == user and t < time)  # strictly before
            expected = [items.index(m) + 1 for _, m in before][-k:]
            got = [int(h) for h in split.x.history[n] if h > 0]
            assert got == expected, (user, time, got, expected)
            assert int(split.x.history[n].shape[0]) == k
            seen += 1
    assert seen == len(rows)


@settings(max_examples=100, deadline=None)
@given(rows=ratings)
def test_each_users_split_follows_time_and_labels_are_ratings_of_4_or_more(rows: list[tuple[int, int, float, int]]) -> None:
    data = build_examples(table(rows), history=3, buckets=97, valid_fraction=0.25, test_fraction=0.25)
    for user in data.train.x.user.unique().tolist() + data.test.x.user.unique().tolist():
        times = [s.time[s.x.user == user] for s in (data.train, data.valid, data.test)]
        for earlier, later in zip(times, times[1:]):
            if len(earlier) and len(later):
                assert int(earlier.max()) <= int(later.min())
        counts = [len(t) for t in times]
        assert counts[2] >= (1 if sum(counts) >= 2 else 0)
    positives = sum(r[2] >= 4 for r in rows)
    assert int(sum(s.label.sum() for s in (data.train, data.valid, data.test))) == positives
    assert int(data.train_counts.sum()) == len(data.train) and data.train_counts[0] == 0


def test_the_wide_features_are_the_hashed_raw_and_cross_ids() -> None:
    data = build_examples(table([(7, 3, 4.0, 1), (7, 5, 2.0, 2), (7, 9, 5.0, 3)]), history=2, buckets=1000, valid_fraction=0.3, test_fraction=0.3)
    x = data.train.x
    assert len(data.train) == 1 and x.item.tolist() == [1] and x.history.tolist() == [[0, 0]]
    wide = x.wide[0]
    assert int(wide[0]) == int(hash_ids(1, torch.tensor(0), torch.tensor(0), 1000))  # user 7 -> id 0
    assert int(wide[1]) == int(hash_ids(2, torch.tensor(1), torch.tensor(0), 1000))  # movie 3 -> item 1
    assert bool(((wide >= 0) & (wide < 1000)).all())
    later = data.test.x
    cross = hash_ids(5, later.history[0], later.item[0], 1000)  # history item x candidate item
    assert set(cross[later.history[0] > 0].tolist()) <= set(later.wide[0].tolist())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["timestamp"]), "ratings table: missing column.s. timestamp; a ratings table needs userId, movieId, rating, timestamp, genres, year"),
        (lambda f: f.assign(rating=[4.0, 5.5, 1.0]), r"ratings table: rating 5.5 in row 1 is outside \[0.5, 5.0\]"),
        (lambda f: f.assign(rating=[4.0, 0.0, 1.0]), r"ratings table: rating 0.0 in row 1 is outside \[0.5, 5.0\]"),
        (lambda f: f.assign(rating=[4.0, 3.0, float("nan")]), r"ratings table: rating nan in row 2 is outside \[0.5, 5.0\]"),
        (lambda f: f.assign(userId=[1, "x", 2]), "ratings table: column userId must hold integers; row 1 holds 'x'"),
        (lambda f: f.assign(timestamp=[1.0, 2.5, 3.0]), "ratings table: column timestamp must hold integers; row 1 holds 2.5"),
        (lambda f: f.assign(timestamp=[1, -2, 3]), r"ratings table: timestamp -2 in row 1 is outside \[0, 2\*\*31\)"),
        (lambda f: f.iloc[:0], "ratings table: no rows"),
    ],
)
def test_malformed_tables_are_refused_in_one_line(change: object, message: str) -> None:
    frame = change(table([(1, 1, 4.0, 1), (1, 2, 3.0, 2), (2, 1, 1.0, 3)]))  # type: ignore[operator]
    with pytest.raises(ValueError, match=message) as error:
        build_examples(frame, history=2, buckets=10, valid_fraction=0.1, test_fraction=0.1)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]),  # all tied: 0.5
        ([0.1, 0.1, 0.5, 0.3, 0.3, 0.9], [0, 1, 1, 0, 1, 1]),
        ([3.0, 2.0, 1.0], [0, 1, 1]),  # perfectly wrong: 0
        ([-1.0, 2.0], [0, 1]),
    ],
)
def test_auc_matches_scikit_learn_on_hand_made_cases(scores: list[float], labels: list[int]) -> None:
    s, y = torch.tensor(scores), torch.tensor(labels, dtype=torch.float32)
    assert auc(s, y) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
    probabilities = torch.sigmoid(s.double()).numpy()
    assert log_loss(s, y) == pytest.approx(sklearn_metrics.log_loss(labels, probabilities), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=60))
def test_auc_matches_scikit_learn_with_many_ties(pairs: list[tuple[int, bool]]) -> None:
    scores = [float(s) for s, _ in pairs]
    labels = [int(y) for _, y in pairs]
    ours = auc(torch.tensor(scores), torch.tensor(labels, dtype=torch.float32))
    if len(set(labels)) < 2:
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_binary_metrics_score_the_tail_on_its_own() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 0.2, -0.3])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    tail = torch.tensor([False, False, True, True, True])
    m = binary_metrics(logits, labels, tail)
    assert m["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(labels.numpy(), logits.numpy()))
    assert m["tail_auc"] == pytest.approx(sklearn_metrics.roc_auc_score([0, 1, 1], [0.5, 0.2, -0.3]))
    assert m["loss"] == m["logloss"] and m["tail_logloss"] == pytest.approx(log_loss(logits[2:], labels[2:]))
    assert math.isnan(binary_metrics(logits, labels, torch.zeros(5, dtype=torch.bool))["tail_auc"])


def test_auc_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"scores \[3\] and labels \[2\] must be 1-d of one length"):
        auc(torch.zeros(3), torch.zeros(2))


def test_hash_ids_stay_in_range_for_large_ids() -> None:
    ids = hash_ids(6, torch.tensor([0, 2**31 - 1, 163949]), torch.tensor([2**31 - 1, 0, 5]), 2**18)
    assert bool(((ids >= 1) & (ids < 2**18)).all()) and np.unique(ids.numpy()).size == 3


def test_the_logreg_peer_scores_what_scikit_learn_fitted(tmp_path: object) -> None:
    from sklearn.linear_model import LogisticRegression

    import tying
    from tying.tasks.recsys.logreg import LogRegPeer, wide_matrix

    rng = np.random.default_rng(0)
    rows = [(int(rng.integers(1, 9)), int(rng.integers(1, 30)), float(rng.choice([1.0, 3.0, 4.0, 5.0])), int(rng.integers(0, 50))) for _ in range(300)]
    data = build_examples(table(rows), history=4, buckets=211, valid_fraction=0.1, test_fraction=0.2)
    peer = LogRegPeer(211, C=0.5, max_iter=500, seed=0)
    loss, count = peer.fit_epoch(data, 1)
    assert count == len(data.train) and 0 < loss < 0.7
    reference = LogisticRegression(C=0.5, max_iter=500).fit(wide_matrix(data.train.x.wide, 211), data.train.label.numpy())
    expected = reference.decision_function(wide_matrix(data.test.x.wide, 211))
    with torch.no_grad():
        ours = peer(data.test.x)
    assert np.allclose(ours.numpy(), expected, atol=1e-4)
    assert tying.summary(peer).unique_parameters == 211 + 1 and not any(p.requires_grad for p in peer.parameters())
    path = f"{tmp_path}/peer.safetensors"
    tying.save(peer, path)
    fresh = LogRegPeer(211, C=0.5, max_iter=500, seed=0)
    tying.load(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh(data.test.x), ours)
    with pytest.raises(ValueError, match="wide id 211 is unknown: the model knows wide ids 0 to 210"):
        peer(data.test.x._replace(wide=torch.full_like(data.test.x.wide, 211)))
