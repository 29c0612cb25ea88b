"""Token-budget batches of sentence pairs, grouped by length, with padding.

Sentences vary in length, so a fixed number of sentences per batch wastes compute on padding
and lets the memory per batch swing with the longest sentence. As in fairseq and the original
Transformer setup (Vaswani et al. 2017: batches of about 25,000 source and target tokens),
pairs are sorted by length and cut into batches of at most ``max_tokens`` *padded* tokens,
``batch size x longest sequence <= max_tokens``, so every batch costs about the same. The order
of the batches (and of equal-length pairs) is shuffled per epoch from a seed.

Sequences are padded on the right with ``<pad>``: the source ends in ``</s>``, the decoder reads
``<s> y_1 ... y_n`` and predicts ``y_1 ... y_n </s>``. The model derives its attention masks from
the padding id (:attr:`TranslationBatch.src_mask`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from tying.tasks.translation.subword import BOS_ID, EOS_ID, PAD_ID

__all__ = ["TranslationBatch", "token_batches"]


@dataclass(frozen=True)
class TranslationBatch:
    """Padded id tensors of one batch.

    Attributes:
        src: ``(B, S)`` source ids, each row ending in ``</s>`` then padding.
        tgt_in: ``(B, T)`` decoder input ``<s> y_1 ... y_n``, or None for source-only batches.
        tgt_out: ``(B, T)`` what each position predicts, ``y_1 ... y_n </s>``, or None.
        index: ``(B,)`` positions of the pairs in the lists given to :func:`token_batches`,
            to put decoded sentences back in input order.
    """

    src: torch.Tensor
    tgt_in: torch.Tensor | None
    tgt_out: torch.Tensor | None
    index: torch.Tensor

    @property
    def src_mask(self) -> torch.Tensor:
        """``(B, S)``: True at real source tokens."""
        return self.src != PAD_ID

    @property
    def target_tokens(self) -> int:
        """Real tokens predicted (``</s>`` included), the unit of tokens/s and of the mean loss."""
        return 0 if self.tgt_out is None else int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device | str) -> TranslationBatch:
        """The batch with its id tensors on ``device`` (``index`` stays on the CPU)."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return TranslationBatch(self.src.to(device, non_blocking=True), move(self.tgt_in), move(self.tgt_out), self.index)


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def token_batches(
    source: list[list[int]],
    target: list[list[int]] | None = None,
    *,
    max_tokens: int = 4096,
    max_length: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> list[TranslationBatch]:
    """Batches of the pairs ``(source[i], target[i])`` (or of the sources alone), each holding at
    most ``max_tokens`` padded tokens on either side; a pair longer than that alone is a batch of one.

    Args:
        source: source id lists, ``</s>`` already appended (:meth:`tying.tasks.translation.Subwords.encode_source`).
        target: target id lists without ``<s>``/``</s>``, or None.
        max_tokens: budget of ``batch size x longest sequence`` per side.
        max_length: if given, a sequence longer than this (decoder side: with ``<s>``) raises
            ``ValueError`` naming the pair (a model's ``max_positions``).
        shuffle: shuffle equal-length pairs and the batch order with ``seed`` (training);
            else pairs go shortest first and batches in that order (evaluation, reproducible).
        seed: e.g. ``base seed + epoch``, for a new order each epoch that a resume reproduces.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if target is not None and len(target) != len(source):
        raise ValueError(f"{len(source):,} source sentences but {len(target):,} target sentences")
    src_len = [len(s) for s in source]
    tgt_len = [len(t) + 1 for t in target] if target is not None else [0] * len(source)
    for i, (s, t) in enumerate(zip(src_len, tgt_len, strict=True)):
        if s == 0:
            raise ValueError(f"source sentence {i} is empty; sources end in </s> (Subwords.encode_source)")
        if max_length is not None and max(s, t) > max_length:
            raise ValueError(f"sentence pair {i} has {s} source / {t} target tokens, more than max_length={max_length}")
    rng = random.Random(seed)
    order = list(range(len(source)))
    if shuffle:
        rng.shuffle(order)  # the stable sort below keeps this order among equal lengths
    order.sort(key=lambda i: (src_len[i], tgt_len[i]))
    groups: list[list[int]] = []
    longest = 0
    for i in order:
        longest_with = max(longest, src_len[i], tgt_len[i])
        if groups and (len(groups[-1]) + 1) * longest_with <= max_tokens:
            groups[-1].append(i)
            longest = longest_with
        else:
            groups.append([i])
            longest = max(src_len[i], tgt_len[i])
    if shuffle:
        rng.shuffle(groups)
    batches = []
    for group in groups:
        src = _pad([source[i] for i in group])
        tgt_in = tgt_out = None
        if target is not None:
            tgt_in = _pad([[BOS_ID, *target[i]] for i in group])
            tgt_out = _pad([[*target[i], EOS_ID] for i in group])
        batches.append(TranslationBatch(src, tgt_in, tgt_out, torch.tensor(group, dtype=torch.long)))
    return batches
