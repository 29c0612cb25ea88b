r"""Wide & Deep (Cheng et al. 2016, arXiv 1606.07792) for rating prediction, with the item
embedding table shared between the candidate item and the user's history.

One example is a user :math:`u`, a candidate item :math:`i` and what is known before the rating:
the user's last :math:`k` rated items :math:`h_1 \dots h_k` (the *history*), the candidate's
genres and release year. The model's logit for "the user likes the item" is the sum of

* the **wide** part, a linear model over sparse binary features: raw ids (user, item, genre,
  decade) and cross products (user x genre, history item x candidate item), hashed by the data
  into ``wide_buckets`` ids; :math:`w^\top x + b` is a sum over an ``nn.EmbeddingBag`` of width 1
  (memorisation);
* the **deep** part, an MLP over the concatenation of the user embedding, the candidate's item
  embedding :math:`E_{i}`, the mean of the history's item embeddings
  :math:`\frac1k\sum_j E'_{h_j}` (an ``nn.EmbeddingBag``, mode ``"mean"``, row 0 the padding), the
  mean genre embedding and the year (generalisation).

**Shared tables** (``shared = True``): the history bag reads the candidate table,
:math:`E' = E` — one visible ``tie(self, "item.weight", "history.weight")`` line, the recommender
form of weight tying (TensorFlow's ``shared_embedding_columns``, TorchRec's
``EmbeddingBagConfig(feature_names=[...])``). A rarely rated candidate then borrows what the
histories of many later ratings taught its row. With ``shared = False`` the two tables are
separate. With :math:`V` item ids (row 0 padding), :math:`U` users, :math:`G` genres (+ padding),
width :math:`d`, genre width :math:`d_g`, MLP of ``depth`` layers of width :math:`H` and
:math:`B` wide buckets, the unique parameters are (:func:`parameter_count`)

.. math::

    P = \underbrace{B + 1}_\text{wide}
      + \underbrace{U d + (1 + [\text{separate}]) V d + (G + 1) d_g
      + (3d + d_g + 2) H + (\text{depth} - 1)(H^2 + H) + H + 1}_\text{deep}.

``parts`` keeps only the wide or only the deep part (the paper's own comparison).
``vocab_size`` is the item vocabulary, so :func:`tying.resize_vocab` grows the item table(s)
when new items arrive and updates ``config.vocab_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
from torch import nn

from tying.constraints import Range, check_ranges
from tying.core import tie

__all__ = ["Ratings", "WideDeep", "WideDeepConfig", "parameter_count"]


class Ratings(NamedTuple):
    """A batch of ``B`` examples (all int64 but ``year``).

    Attributes:
        user: ``(B,)`` user ids in ``[0, num_users)``.
        item: ``(B,)`` candidate item ids in ``[1, vocab_size)`` (0 is the padding id).
        history: ``(B, L)``, ``L <= history``: the user's last rated items, padded with 0.
        genres: ``(B, M)`` the candidate's genre ids in ``[1, num_genres]``, padded with 0.
        year: ``(B,)`` float, the candidate's release year, scaled.
        wide: ``(B, F)`` hashed wide feature ids in ``[1, wide_buckets)``, padded with 0.
    """

    user: torch.Tensor
    item: torch.Tensor
    history: torch.Tensor
    genres: torch.Tensor
    year: torch.Tensor
    wide: torch.Tensor


@dataclass(frozen=True)
class WideDeepConfig:
    """Sizes of a :class:`WideDeep` model.

    Attributes:
        vocab_size: item ids, the padding id 0 included (filled in from the data).
        num_users: user ids (filled in from the data).
        num_genres: genre ids, 1 to ``num_genres`` (filled in from the data).
        embedding_dim: width of the user and item embeddings.
        genre_dim: width of the genre embeddings.
        hidden: width of each MLP layer.
        depth: MLP layers before the output.
        history: the longest history (most recent items) an example may hold.
        wide_buckets: hashed wide feature ids (id 0 is the padding).
        shared: the history bag reads the candidate item table (one tie) or has its own.
        parts: ``"wide_deep"``, ``"wide"`` only, or ``"deep"`` only.
    """

    vocab_size: Annotated[int, Range(ge=2)] = 2
    num_users: Annotated[int, Range(ge=1)] = 1
    num_genres: Annotated[int, Range(ge=1)] = 1
    embedding_dim: Annotated[int, Range(ge=1)] = 32
    genre_dim: Annotated[int, Range(ge=1)] = 8
    hidden: Annotated[int, Range(ge=1)] = 64
    depth: Annotated[int, Range(ge=1)] = 2
    history: Annotated[int, Range(ge=1)] = 20
    wide_buckets: Annotated[int, Range(ge=2)] = 2**18
    shared: bool = True
    parts: Literal["wide_deep", "wide", "deep"] = "wide_deep"

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.parts not in ("wide_deep", "wide", "deep"):
            raise ValueError(f"parts must be 'wide_deep', 'wide' or 'deep', got {self.parts!r}")

    @property
    def wide(self) -> bool:
        return self.parts != "deep"

    @property
    def deep(self) -> bool:
        return self.parts != "wide"


class WideDeep(nn.Module):
    """``forward(x: Ratings)`` gives the logits ``(B,)`` of "the user likes the candidate"."""

    def __init__(self, config: WideDeepConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.wide:
            self.wide = nn.EmbeddingBag(c.wide_buckets, 1, mode="sum", padding_idx=0)
            self.wide_bias = nn.Parameter(torch.zeros(1))
            nn.init.zeros_(self.wide.weight)
        if c.deep:
            d = c.embedding_dim
            self.user = nn.Embedding(c.num_users, d)
            self.item = nn.Embedding(c.vocab_size, d)
            self.history = nn.EmbeddingBag(c.vocab_size, d, mode="mean", padding_idx=0)
            self.genres = nn.EmbeddingBag(c.num_genres + 1, c.genre_dim, mode="mean", padding_idx=0)
            for table in (self.user, self.item, self.history):
                nn.init.normal_(table.weight, std=0.1)
            widths = [3 * d + c.genre_dim + 1] + [c.hidden] * c.depth
            layers: list[nn.Module] = []
            for a, b in zip(widths, widths[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.mlp = nn.Sequential(*layers, nn.Linear(c.hidden, 1))
            if c.shared:
                tie(self, "item.weight", "history.weight")  # the history bag reads the candidate item table

    def check(self, x: Ratings) -> None:
        """Raise ``ValueError`` naming the field when ``x`` holds an id the model does not know
        or a history longer than ``config.history``."""
        c = self.config
        if x.history.dim() != 2 or x.history.shape[1] > c.history:
            raise ValueError(f"history has shape {list(x.history.shape)}; the model takes (batch, L) with L <= history = {c.history}")
        for name, ids, lo, hi in (
            ("user", x.user, 0, c.num_users),
            ("item", x.item, 1, c.vocab_size),
            ("history", x.history, 0, c.vocab_size),
            ("genres", x.genres, 0, c.num_genres + 1),
            ("wide", x.wide, 0, c.wide_buckets),
        ):
            if ids.numel() and (int(ids.min()) < lo or int(ids.max()) >= hi):
                bad = int(ids.min()) if int(ids.min()) < lo else int(ids.max())
                raise ValueError(f"{name} id {bad} is unknown: the model knows {name} ids {lo} to {hi - 1}")

    def forward(self, x: Ratings) -> torch.Tensor:
        self.check(x)
        logit = torch.zeros(len(x.user), device=x.user.device)
        if self.config.wide:
            logit = logit + self.wide(x.wide).squeeze(1) + self.wide_bias
        if self.config.deep:
            deep = torch.cat([self.user(x.user), self.item(x.item), self.history(x.history), self.genres(x.genres), x.year[:, None]], dim=1)
            logit = logit + self.mlp(deep).squeeze(1)
        return logit


def parameter_count(config: WideDeepConfig) -> int:
    """Unique parameters of ``WideDeep(config)`` (closed form; module docstring)."""
    c, d, h = config, config.embedding_dim, config.hidden
    wide = c.wide_buckets + 1
    tables = c.num_users * d + (1 if c.shared else 2) * c.vocab_size * d + (c.num_genres + 1) * c.genre_dim
    mlp = (3 * d + c.genre_dim + 2) * h + (c.depth - 1) * (h * h + h) + h + 1
    return (wide if c.wide else 0) + (tables + mlp if c.deep else 0)
