r"""Skip-gram with negative sampling (SGNS, word2vec; Mikolov et al. 2013), with its context
vectors untied, tied, or tied as reflections of the word vectors.

Two tables score a word :math:`w` in a context :math:`c`: word vectors :math:`W` and context
vectors :math:`C`, :math:`s(w, c) = W_w \cdot C_c`. For a pair :math:`(w, c)` seen in the text and
:math:`k` noise words :math:`n_1 \dots n_k` drawn from the unigram distribution raised to the
power 3/4, the loss is

.. math::

    \ell = -\log \sigma(W_w \cdot C_c) - \sum_{i=1}^{k} \log \sigma(-W_w \cdot C_{n_i}).

``tie`` chooses the context table:

* ``"none"``: its own table (word2vec: :math:`W` uniform in :math:`\pm 0.5/d`, :math:`C` zero);
* ``"tied"``: :math:`C = W` (``tying.tie``). Every word then scores :math:`\lVert W_w \rVert^2 > 0`
  with itself as its own context, although words rarely occur next to themselves;
* ``"reflected"``: :math:`C = W D`, :math:`D = \operatorname{diag}(s)`, :math:`s_j = \pm 1`
  (``tying.tie_reflected``; Assylbekov & Takhanov, JAIR 2019, arXiv 1902.09859). A word's score
  with itself is :math:`\sum_{s_j = +1} W_{wj}^2 - \sum_{s_j = -1} W_{wj}^2`, no longer forced
  to be large. ``negative_fraction`` of the :math:`d` signs (rounded) are :math:`-1`, at
  positions drawn from ``sign_seed`` (:func:`reflection_signs`); the checkpoint stores :math:`W`
  once plus the signs.

Both tied variants have half the untied model's parameters. :meth:`SkipGram.loss` is the summed
loss of a batch (each centre word against its targets: context words, noise words, each with a
weight), computed by :class:`SGNSLoss` (gather, score, and on the way back add
the rows' gradients into the tables with ``index_add_``, faster on the CPU than the embedding
backward), so that every gradient still reaches the tables through autograd: a tied table
collects the gradient of both of its uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tying.constraints import Range, check_ranges
from tying.core import tie, tie_reflected
from tying.spec import get_spec

__all__ = ["SGNSConfig", "SkipGram", "SGNSLoss", "SGNSTie", "reflection_signs"]

SGNSTie = Literal["none", "tied", "reflected"]


@dataclass(frozen=True)
class SGNSConfig:
    """Sizes of a :class:`SkipGram`.

    Attributes:
        vocab_size: rows of each table.
        dim: the vectors' dimension :math:`d`.
        tie: ``"none"``, ``"tied"`` (:math:`C = W`) or ``"reflected"`` (:math:`C = W D`).
        negative_fraction: the share of the :math:`d` signs of :math:`D` that are :math:`-1`
            (``"reflected"`` only; 0 is the plain tie written as a reflection).
        sign_seed: seed of the positions of the :math:`-1` signs.
    """

    vocab_size: Annotated[int, Range(ge=1)]
    dim: Annotated[int, Range(ge=1)] = 100
    tie: SGNSTie = "none"
    negative_fraction: Annotated[float, Range(ge=0, le=1)] = 0.5
    sign_seed: int = 0

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.tie not in ("none", "tied", "reflected"):
            raise ValueError(f"tie must be 'none', 'tied' or 'reflected', got {self.tie!r}")


def reflection_signs(dim: int, fraction: float, seed: int = 0) -> list[int]:
    """``dim`` signs of which ``round(fraction * dim)`` are ``-1``, at the first positions of
    ``torch.randperm(dim)`` drawn from a generator seeded with ``seed`` (for ``fraction = 0.5``
    and even ``dim``, the signs of ``tying.Reflect.half_negative(dim, seed)``)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    # On the CPU, also under a ``torch.device("meta")`` context: the signs are data, not module state.
    negative = torch.randperm(dim, generator=torch.Generator().manual_seed(seed), device="cpu")[: round(fraction * dim)]
    signs = torch.ones(dim, dtype=torch.int64, device="cpu")
    signs[negative] = -1
    return signs.tolist()


class SGNSLoss(torch.autograd.Function):
    r"""``loss(W, C, words, targets, weights)``: :math:`\sum_{i,t} |a_{it}|\,
    \operatorname{softplus}(-\operatorname{sign}(a_{it})\, W_{\text{words}_i} \cdot C_{\text{targets}_{it}})`
    with ``a = weights``: a positive weight marks a context word seen with ``words[i]``, a
    negative one a noise word, zero a padding slot; with ``signs`` (one per column), :math:`C` is
    ``c_table * signs``. The gradients of ``W`` and ``c_table`` are sparse (COO, the rows a batch
    touches, uncoalesced), so a step costs what the batch touches, not the size of the vocabulary."""

    @staticmethod
    def forward(
        ctx: Any, w_table: torch.Tensor, c_table: torch.Tensor, words: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
        signs: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        w = w_table.index_select(0, words)  # (B, d)
        out = c_table.index_select(0, targets.reshape(-1)).view(*targets.shape, -1)  # (B, T, d)
        if signs is not None:
            out.mul_(signs)  # the rows of C = c_table * signs
        signed = torch.linalg.vecdot(out, w.unsqueeze(1)).mul_(weights.sign())  # (B, T); faster than bmm on the CPU
        ctx.save_for_backward(w, out, signed, words, targets, weights, signs)
        ctx.shapes = (w_table.shape, c_table.shape)
        return F.softplus(-signed).mul_(weights.abs()).sum()  # -log sigmoid(x) = softplus(-x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None, None]:
        w, out, signed, words, targets, weights, signs = ctx.saved_tensors
        g = torch.sigmoid(-signed).mul_(weights).mul_(-grad)  # d loss / d score
        w_shape, c_shape = ctx.shapes
        grad_w = grad_c = None
        if ctx.needs_input_grad[0]:
            rows = torch.bmm(g.unsqueeze(1), out).squeeze(1)
            grad_w = torch.sparse_coo_tensor(words.unsqueeze(0), rows, w_shape, check_invariants=False)
        if ctx.needs_input_grad[1]:
            rows = w.unsqueeze(1).expand(out.shape).mul(g.unsqueeze(2)).reshape(-1, w.shape[1])
            if signs is not None:
                rows.mul_(signs)
            grad_c = torch.sparse_coo_tensor(targets.reshape(1, -1), rows, c_shape, check_invariants=False)
        return grad_w, grad_c, None, None, None, None


class SkipGram(nn.Module):
    """``words`` (:math:`W`) and ``contexts`` (:math:`C`): ``nn.Embedding`` s of ``(vocab_size, dim)``;
    :meth:`loss` sums the SGNS loss of a batch of pairs."""

    def __init__(self, config: SGNSConfig) -> None:
        super().__init__()
        self.config = config
        v, d = config.vocab_size, config.dim
        self.words = nn.Embedding(v, d)
        self.contexts = nn.Embedding(v, d)
        self._signs: tuple[Any, torch.Tensor] | None = None  # (signs, dtype, device) -> the signs as a tensor
        with torch.no_grad():
            self.words.weight.uniform_(-0.5 / d, 0.5 / d)  # word2vec's initialisation
            self.contexts.weight.zero_()
        if config.tie == "tied":
            tie(self, "words.weight", "contexts.weight")  # C = W
        elif config.tie == "reflected":
            tie_reflected(self, "words.weight", "contexts.weight", reflection_signs(d, config.negative_fraction, config.sign_seed))  # C = W D

    def loss(self, words: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Summed loss of ``words[i]`` against ``targets[i, t]``, weighted by ``weights[i, t]``
        (> 0: a context word, < 0: a noise word, 0: padding; :class:`SGNSLoss`)."""
        table, signs = self.context_table()
        loss = SGNSLoss.apply(self.words.weight, table, words, targets, weights, signs)
        assert isinstance(loss, torch.Tensor)
        return loss

    def context_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What :class:`SGNSLoss` reads :math:`C` from: ``(table, signs)``. While the context vectors
        are the declared reflection of the word vectors, the source :math:`W` and the tie's signs, so
        a step reads the rows it needs as :math:`W` rows times the signs (exactly what
        ``contexts.weight`` holds) instead of recomputing the whole table; else ``contexts.weight``."""
        for t in get_spec(self).ties:
            if (t.source, t.target, t.transform) == ("words.weight", "contexts.weight", "reflect"):
                w = self.words.weight
                key = (tuple(dict(t.params)["signs"]), w.dtype, w.device)
                if self._signs is None or self._signs[0] != key:
                    self._signs = (key, torch.tensor(key[0], dtype=w.dtype, device=w.device))
                return w, self._signs[1]
        return self.contexts.weight, None

    def word_vectors(self) -> torch.Tensor:
        """:math:`W`, the vectors kept after training (word2vec's output)."""
        return self.words.weight

    def forward(self, words: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.loss(words, targets, weights)
