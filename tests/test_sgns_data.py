"""The skip-gram data (tying.tasks.sgns.corpus): vocabulary, subsampling, dynamic windows within
sentences, the unigram^0.75 noise distribution (a statistical test), the two batch layouts, and
errors for an empty corpus."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tying.data.files import DataError
from tying.tasks.sgns.corpus import EpochBatches, NoiseSampler, keep_probabilities, read_stream, read_vocabulary, seeded, window_pairs


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_vocabulary_is_most_frequent_first_and_drops_rare_words(tmp_path: Path) -> None:
    path = _write(tmp_path, "b a a c\nc a b d\n\nb\n")
    vocab = read_vocabulary(path, min_count=2)
    assert vocab.words == ["b", "a", "c"] and vocab.counts.tolist() == [3, 3, 2]  # equal counts: first seen first
    stream = read_stream(path, vocab.index())
    assert stream.ids.tolist() == [0, 1, 1, 2, 2, 1, 0, 0] and stream.sentences.tolist() == [0, 0, 0, 0, 1, 1, 1, 3]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", r"train\.txt' has no words; the skip-gram vocabulary is built from it"),
     ("\n  \n", r"train\.txt' has no words"),
     ("a b c\n", r"train\.txt' has no word occurring at least min_count = 2 times")],
)  # fmt: skip
def test_an_empty_corpus_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as error:
        read_vocabulary(_write(tmp_path, text), min_count=2)
    assert "\n" not in str(error.value)


def test_noise_matches_the_unigram_distribution_to_the_three_quarters() -> None:
    counts = torch.tensor([500, 120, 40, 9, 1])
    noise = NoiseSampler(counts)
    expected = counts.double() ** 0.75 / (counts.double() ** 0.75).sum()
    assert torch.allclose(noise.probabilities, expected)
    n = 200_000
    draws = noise.sample((n,), torch.Generator().manual_seed(0))
    observed = torch.bincount(draws, minlength=5).double() / n
    # Within 5 standard errors of each word's probability (fixed seed: deterministic).
    assert torch.all((observed - expected).abs() <= 5 * (expected * (1 - expected) / n).sqrt())
    chi2 = (((observed - expected) * n) ** 2 / (expected * n)).sum().item()
    assert chi2 < 18.5  # chi-square, 4 degrees of freedom: p > 0.001
    assert not torch.allclose(observed, counts.double() / counts.sum(), atol=0.01)  # not the plain unigram


def test_subsampling_follows_gensims_formula() -> None:
    counts = torch.tensor([1000, 100, 10, 1])
    keep = keep_probabilities(counts, 1e-2)
    t = 1e-2 * 1111
    assert keep.tolist() == pytest.approx([min(1.0, (math.sqrt(n / t) + 1) * t / n) for n in (1000, 100, 10, 1)])
    assert keep[0] < 0.2 and keep[-1] == 1.0
    assert keep_probabilities(counts, 0.0).tolist() == [1.0] * 4


def test_windows_stay_in_their_sentence_and_within_the_drawn_reach() -> None:
    ids = torch.arange(10)
    sentences = torch.tensor([0] * 6 + [1] * 4)
    pairs = window_pairs(ids, sentences, range(0, 10), 3, seeded(1))
    assert all(sentences[a] == sentences[b] and 1 <= abs(int(a) - int(b)) <= 3 for a, b in pairs)
    full = window_pairs(ids, sentences, range(0, 10), 1, seeded(1))  # reach 1: both neighbours
    assert sorted(map(tuple, full.tolist())) == sorted(
        [(i, j) for i in range(10) for j in (i - 1, i + 1) if 0 <= j < 10 and sentences[i] == sentences[j]]
    )


@pytest.mark.parametrize("per", ["pair", "centre"])
def test_batches_cover_the_text_are_reproducible_and_weigh_noise_by_the_pairs(per: str) -> None:
    g = torch.Generator().manual_seed(3)
    ids, sentences = torch.randint(0, 20, (300,), generator=g), torch.arange(300) // 25
    from tying.tasks.sgns.corpus import Stream

    stream, counts = Stream(ids, sentences), torch.bincount(ids, minlength=20)
    make = lambda: EpochBatches(stream, torch.ones(20), NoiseSampler(counts), window=2, negatives=3, chunk_words=64, seed=(7, 1), per=per)  # type: ignore[arg-type]  # noqa: E731
    batches = make()
    assert len(batches) == 5 and sum(int(b[3]) for b in batches) == 300
    again = make()
    for a, b in zip(batches, again):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    words, targets, weights, _ = batches[0]
    positives = weights.clamp(min=0)
    assert targets.shape == weights.shape and targets.shape[1] == (1 if per == "pair" else 4) + 3
    assert torch.equal(weights[:, -3:], -positives.sum(1, keepdim=True).expand(-1, 3))
    pairs = sorted((int(w), int(t)) for w, row, a in zip(words, targets, weights) for t, x in zip(row, a) if x > 0)
    expected = window_pairs(stream.ids, stream.sentences, range(0, 64), 2, seeded(7, 1, 1))
    assert pairs == sorted(map(tuple, expected.tolist()))  # both layouts hold the same pairs
    with pytest.raises(IndexError):
        batches[5]
