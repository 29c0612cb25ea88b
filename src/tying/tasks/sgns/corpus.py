r"""The skip-gram data as word2vec and gensim prepare it: a vocabulary of the words occurring at
least ``min_count`` times in ``train.txt`` (most frequent first), each line a sentence, words out of the
vocabulary dropped before windows are taken, frequent words subsampled, context windows
shrunk at random, and noise words drawn from the unigram distribution raised to the power 3/4.

* **Subsampling** (gensim's formula, Mikolov et al. 2013): with :math:`t = \text{sample} \cdot N`
  (:math:`N` words in the training text), a word seen :math:`n` times is kept with probability
  :math:`\min\bigl(1, (\sqrt{n/t} + 1)\, t / n\bigr)`, drawn anew every epoch; windows are taken
  over the kept words, so a subsampled word brings further words into the window.
* **Dynamic window**: each centre word takes its contexts up to :math:`b` kept words either side
  within its sentence, :math:`b` uniform in :math:`1 \dots \text{window}`.
* **Noise**: :math:`P(w) \propto n_w^{3/4}` (:class:`NoiseSampler`), ``negatives`` noise words
  per pair, drawn independently for each pair as word2vec does (``noise = "pair"``), or drawn
  once per centre word and counted once for each of its pairs (``noise = "centre"``: the same
  expected gradient from a sixth of the noise rows on average, a faster approximation).

A batch is a chunk of ``chunk_words`` consecutive words of the text, in the text's order as
word2vec reads it (:class:`EpochBatches`): all the pairs whose centre lies in the chunk, with
their noise words. Each chunk's randomness comes from a generator seeded with the run's seed, the
epoch and the chunk's index, so a resumed run sees the same batches.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tying.data.files import DataError

__all__ = ["Vocabulary", "Stream", "read_vocabulary", "read_stream", "NoiseSampler", "keep_probabilities", "window_slots", "window_pairs", "EpochBatches", "seeded"]


@dataclass
class Vocabulary:
    """The training words, most frequent first (ties in order of first occurrence), and their counts."""

    words: list[str]
    counts: torch.Tensor  # int64, one per word

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}


@dataclass
class Stream:
    """A text as word ids with a sentence id per word (words out of the vocabulary dropped)."""

    ids: torch.Tensor  # int64
    sentences: torch.Tensor  # int64, non-decreasing

    def __len__(self) -> int:
        return int(self.ids.numel())


def read_vocabulary(file: Path, min_count: int) -> Vocabulary:
    """The words of ``file`` occurring at least ``min_count`` times (``DataError`` when there are none)."""
    counts: Counter[str] = Counter()
    with file.open(encoding="utf-8") as f:
        for line in f:
            counts.update(line.split())
    kept = [(w, n) for w, n in counts.items() if n >= min_count]
    if not kept:
        what = "has no words" if not counts else f"has no word occurring at least min_count = {min_count} times"
        raise DataError(f"{str(file)!r} {what}; the skip-gram vocabulary is built from it")
    kept.sort(key=lambda wn: -wn[1])  # stable: equal counts keep their first-occurrence order
    return Vocabulary([w for w, _ in kept], torch.tensor([n for _, n in kept], dtype=torch.int64))


def read_stream(file: Path, index: dict[str, int]) -> Stream:
    """The words of ``file`` in ``index`` as ids, each line a sentence."""
    ids: list[int] = []
    sentences: list[int] = []
    with file.open(encoding="utf-8") as f:
        for number, line in enumerate(f):
            known = [index[w] for w in line.split() if w in index]
            ids.extend(known)
            sentences.extend([number] * len(known))
    return Stream(torch.tensor(ids, dtype=torch.int64), torch.tensor(sentences, dtype=torch.int64))


def keep_probabilities(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """Per word, the probability of keeping an occurrence (1 everywhere when ``sample`` is 0)."""
    if sample <= 0:
        return torch.ones(len(counts), dtype=torch.float64)
    t = sample * counts.sum().item()
    n = counts.double()
    return ((n / t).sqrt() + 1).mul(t / n).clamp(max=1.0)


def seeded(*parts: int) -> torch.Generator:
    """A generator seeded with a number mixed from ``parts`` (run seed, epoch, chunk)."""
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + p) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class NoiseSampler:
    r"""Noise words :math:`P(w) \propto n_w^{\text{power}}` (word2vec: power 3/4), by inverse
    transform sampling of the cumulative distribution."""

    def __init__(self, counts: torch.Tensor, power: float = 0.75) -> None:
        p = counts.double().pow(power)
        self.probabilities = p / p.sum()
        self.cdf = self.probabilities.cumsum(0)
        self.cdf[-1] = 1.0

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        return torch.searchsorted(self.cdf, u).clamp_(max=len(self.cdf) - 1)


def window_slots(ids: torch.Tensor, sentences: torch.Tensor, centres: range, window: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The context words of the words at positions ``centres`` of ``ids``: ``(centre ids (M,),
    context ids (M, 2 * window), inside (M, 2 * window))``, slot ``o`` holding the word at offset
    ``-window .. -1, 1 .. window`` and ``inside`` saying whether it counts: within ``b`` positions
    (``b`` uniform in ``1 .. window`` per centre: word2vec's dynamic window) in the same sentence."""
    i = torch.arange(centres.start, centres.stop)
    reach = torch.randint(1, window + 1, (len(i),), generator=generator)
    offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)])
    j = i.unsqueeze(1) + offsets
    inside = (j >= 0) & (j < len(ids)) & (offsets.abs() <= reach.unsqueeze(1))
    j = j.clamp(0, max(len(ids) - 1, 0))
    inside &= sentences[j] == sentences[i].unsqueeze(1)
    return ids[i], ids[j], inside


def window_pairs(ids: torch.Tensor, sentences: torch.Tensor, centres: range, window: int, generator: torch.Generator) -> torch.Tensor:
    """The ``(P, 2)`` pairs ``(centre word, context word)`` of :func:`window_slots`."""
    centre, context, inside = window_slots(ids, sentences, centres, window, generator)
    return torch.stack([centre.unsqueeze(1).expand_as(context)[inside], context[inside]], dim=1)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class EpochBatches(Sequence[Batch]):
    """The batches of one epoch: batch ``k`` is ``(words, targets, weights, n)`` for the centres
    among words ``k * chunk_words ..`` of ``stream`` (:meth:`tying.models.SkipGram.loss`'s
    arguments, and ``n`` the words of the chunk, subsampled ones included: what throughput and
    the loss per word count). ``noise = "pair"``: a row per pair, the context word (weight 1) then
    ``negatives`` noise words (weight -1); ``"centre"``: a row per centre, its ``2 * window``
    context slots (weight 1 inside the window, else 0) then ``negatives`` noise words weighted
    by minus the number of its pairs."""

    def __init__(
        self, stream: Stream, keep: torch.Tensor, noise: NoiseSampler, *, window: int, negatives: int, chunk_words: int,
        seed: tuple[int, ...], per: Literal["pair", "centre"] = "pair",
    ) -> None:  # fmt: skip
        self.seed, self.window, self.negatives, self.noise, self.per = seed, window, negatives, noise, per
        kept = torch.rand(len(stream), generator=seeded(*seed), dtype=torch.float64) < keep[stream.ids]
        self.positions = kept.nonzero().squeeze(1)  # where each kept word stands in the text
        self.ids, self.sentences = stream.ids[kept], stream.sentences[kept]
        self.total, self.chunk = len(stream), chunk_words

    def __len__(self) -> int:
        return math.ceil(self.total / self.chunk)

    def __getitem__(self, k: int) -> Batch:  # type: ignore[override]
        if not 0 <= k < len(self):
            raise IndexError(k)
        start, stop = k * self.chunk, min((k + 1) * self.chunk, self.total)
        bounds = torch.searchsorted(self.positions, torch.tensor([start, stop])).tolist()
        g = seeded(*self.seed, k + 1)
        centre, context, inside = window_slots(self.ids, self.sentences, range(bounds[0], bounds[1]), self.window, g)
        if self.per == "pair":
            words, positives = centre.unsqueeze(1).expand_as(context)[inside], context[inside].unsqueeze(1)
            ones = torch.ones(len(words), 1)
        else:
            keep = inside.any(1)
            words, positives, ones = centre[keep], context[keep], inside[keep].float()
        noise = self.noise.sample((len(words), self.negatives), g)
        counts = ones.sum(1, keepdim=True).expand(-1, self.negatives)
        return words, torch.cat([positives, noise], 1), torch.cat([ones, -counts], 1), torch.tensor(stop - start)
