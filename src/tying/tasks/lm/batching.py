"""Truncated back-propagation through time (BPTT) batching of a token stream.

The corpus is one long stream :math:`x_1 \\dots x_N`. :func:`batchify` cuts it into ``B``
contiguous pieces laid side by side as the columns of a ``(N // B, B)`` matrix, so row ``t``
holds token ``t`` of every piece and a recurrent state carried from one window to the next
continues the same text. :class:`BPTTBatches` then walks down the rows in windows of ``bptt``
steps: the target of input row ``t`` is row ``t + 1`` (next-word prediction). Gradients are
truncated at window boundaries; the hidden state is carried over (Zaremba et al. 2014,
arXiv 1409.2329; pytorch/examples ``word_language_model``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

__all__ = ["batchify", "BPTTBatches"]


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Lay the 1-D stream ``data`` out as a ``(len(data) // batch_size, batch_size)`` matrix whose
    column ``b`` is the ``b``-th contiguous piece; the last ``len(data) % batch_size`` tokens
    are dropped."""
    if data.dim() != 1:
        raise ValueError(f"batchify expects a 1-D token stream, got shape {list(data.shape)}")
    rows = data.numel() // batch_size
    if rows < 2:
        raise ValueError(
            f"a stream of {data.numel():,} tokens gives fewer than 2 rows at batch size {batch_size}; "
            "use a smaller batch size or more data"
        )
    return data[: rows * batch_size].view(batch_size, rows).t().contiguous()


class BPTTBatches:
    """``(inputs, targets)`` windows of at most ``bptt`` rows of a batchified ``(T, B)`` matrix:
    ``inputs = data[i : i + n]``, ``targets = data[i + 1 : i + 1 + n]``, ``n = min(bptt, T - 1 - i)``.

    Each window is a view (no copy); ``len()`` is the number of windows, the last one possibly
    shorter.
    """

    def __init__(self, data: torch.Tensor, bptt: int) -> None:
        if data.dim() != 2:
            raise ValueError(f"BPTTBatches expects batchified (T, B) data, got shape {list(data.shape)}; see batchify")
        if bptt < 1:
            raise ValueError(f"bptt must be at least 1, got {bptt}")
        self.data, self.bptt = data, bptt

    def __len__(self) -> int:
        return math.ceil((self.data.size(0) - 1) / self.bptt)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k``-th window (``0 <= k < len(self)``)."""
        if not 0 <= k < len(self):
            raise IndexError(f"window {k} out of range: there are {len(self)}")
        i = k * self.bptt
        n = min(self.bptt, self.data.size(0) - 1 - i)
        return self.data[i : i + n], self.data[i + 1 : i + 1 + n]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return (self[k] for k in range(len(self)))
