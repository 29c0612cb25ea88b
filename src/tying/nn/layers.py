"""Output layers and dropout built on :mod:`tying.functional`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tying.functional import CHUNK_MEMORY, Reduction, tied_linear_cross_entropy

__all__ = ["TiedOutput", "JointOutput", "JointActivation", "LockedDropout", "embedding_dropout"]

JointActivation = Literal["tanh", "relu", "sigmoid", "identity"]
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


class TiedOutput(nn.Linear):
    r"""An output classifier :math:`z = W h + b` (``W``: ``[V, d]``) with a fused, memory-efficient
    :meth:`loss`.

    It *is* an ``nn.Linear``, so it ties like one — ``tying.tie(model, "embed.weight",
    "out.weight")`` makes :math:`W = E` (Press & Wolf 2017, arXiv 1608.05859) — and ``forward``
    returns logits for decoding. Training calls :meth:`loss`, which computes
    ``cross_entropy(forward(h), target)`` and its gradients without materialising the
    :math:`N\times V` logits (:func:`tying.functional.tied_linear_cross_entropy`).

    Args:
        in_features: hidden size ``d``.
        out_features: vocabulary size ``V``.
        bias: learn an output bias :math:`b` (kept separate from the tied matrix).
        chunk_size: tokens per chunk of :meth:`loss`; overrides ``memory_budget``.
        memory_budget: bytes of logits one chunk of :meth:`loss` holds at once (default 64 MiB):
            the chunk size follows from the number of tokens times ``out_features`` and this
            budget (:func:`tying.functional.chunk_rows`).
        compute_dtype: e.g. ``torch.bfloat16`` to run the three matrix products in bf16.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        chunk_size: int | None = None,
        memory_budget: int = CHUNK_MEMORY,
        compute_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.chunk_size = chunk_size
        self.memory_budget = memory_budget
        self.compute_dtype = compute_dtype

    def loss(
        self,
        hidden: Tensor,
        target: Tensor,
        *,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
    ) -> Tensor:
        """``F.cross_entropy(self(hidden), target, ...)`` without the logits in memory."""
        scored, weight = self.scoring(hidden)
        return tied_linear_cross_entropy(
            scored,
            weight,
            target,
            self.bias,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            chunk_size=self.chunk_size,
            memory_budget=self.memory_budget,
            compute_dtype=self.compute_dtype,
        )

    def scoring(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """The vectors and the matrix whose product, plus ``bias``, is the logits: ``(hidden, weight)``."""
        return hidden, self.weight

    def extra_repr(self) -> str:
        extra = f", chunk_size={self.chunk_size}" if self.chunk_size else ""
        extra += f", memory_budget={self.memory_budget}" if self.memory_budget != CHUNK_MEMORY else ""
        extra += f", compute_dtype={self.compute_dtype}" if self.compute_dtype else ""
        return super().extra_repr() + extra


class JointOutput(TiedOutput):
    r"""Joint input-output embedding (Pappas, Miculicich & Henderson 2018, "Beyond Weight Tying",
    arXiv 1808.10681): words and hidden states are projected into a joint space of their own size
    :math:`j` and scored there,

    .. math::

        z = g(E\,U + b_u)\; g(V h + b_v)^\top + b,

    with :math:`E \in \mathbb{R}^{|V| \times d}` the word embeddings (``weight``; tie it to the
    input embedding), :math:`U \in \mathbb{R}^{d \times j}` and :math:`b_u` (``word``),
    :math:`V \in \mathbb{R}^{j \times d_h}` and :math:`b_v` (``state``), a vocabulary bias
    :math:`b` (``bias``) and a nonlinearity :math:`g` (the paper's is tanh). With
    :math:`U = V = I`, no biases and :math:`g` the identity it is plain tying, :math:`z = E h + b`;
    the joint space decouples the output layer's capacity from the embedding size while keeping the tie.

    A :class:`TiedOutput` whose :meth:`scoring` goes through the joint space: ``forward`` returns
    logits and :meth:`~TiedOutput.loss` computes the cross-entropy with the :math:`|V| \times j`
    joint word matrix in place of :math:`E`, without the :math:`N \times |V|` logits in memory.

    Args:
        in_features: hidden size :math:`d_h` of the states scored.
        out_features: vocabulary size :math:`|V|`.
        joint_size: :math:`j`.
        embedding_size: :math:`d`, columns of ``weight`` (default ``in_features``).
        activation: :math:`g`: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"identity"``.
        chunk_size, memory_budget, compute_dtype: as for :class:`TiedOutput`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        joint_size: int,
        *,
        embedding_size: int | None = None,
        activation: JointActivation = "tanh",
        chunk_size: int | None = None,
        memory_budget: int = CHUNK_MEMORY,
        compute_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"JointOutput activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        embedding_size = in_features if embedding_size is None else embedding_size
        super().__init__(
            embedding_size, out_features, True, chunk_size=chunk_size, memory_budget=memory_budget,
            compute_dtype=compute_dtype, device=device, dtype=dtype,
        )  # fmt: skip
        self.word = nn.Linear(embedding_size, joint_size, device=device, dtype=dtype)  # U, b_u
        self.state = nn.Linear(in_features, joint_size, device=device, dtype=dtype)  # V, b_v
        self.activation = activation

    def scoring(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`g(V h + b_v)` ``[..., j]`` and :math:`g(E U + b_u)` ``[|V|, j]``: states and words in the joint space."""
        g = _ACTIVATIONS[self.activation]
        return g(self.state(hidden)), g(self.word(self.weight))

    def forward(self, hidden: Tensor) -> Tensor:
        return F.linear(*self.scoring(hidden), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", joint_size={self.word.out_features}, activation={self.activation}"


class LockedDropout(nn.Module):
    r"""Variational dropout for sequences ``(T, B, H)``: one Bernoulli mask per sequence and
    feature, the same at every time step, scaled by :math:`1/(1-p)` (Gal & Ghahramani 2016,
    arXiv 1512.05287; AWD-LSTM). Standard dropout draws a new mask per step, which is noisier and
    regularises recurrent models less well. Identity in eval mode or with ``p = 0``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"LockedDropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(1, *x.shape[1:]).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    r"""``weight`` (``[V, d]``) with each row zeroed with probability ``p`` and the others scaled by
    :math:`1/(1-p)`: dropping whole words from the input lookup (Gal & Ghahramani 2016; AWD-LSTM).
    Returns ``weight`` itself when not training or ``p = 0``. The result is a new tensor whose
    gradient flows into ``weight``, so a tied output layer that reads ``weight`` directly still
    scores every word."""
    if not training or p == 0.0:
        return weight
    if not 0.0 < p < 1.0:
        raise ValueError(f"embedding dropout p must be in [0, 1), got {p}")
    mask = weight.new_empty(weight.size(0), 1).bernoulli_(1.0 - p) / (1.0 - p)
    return weight * mask
