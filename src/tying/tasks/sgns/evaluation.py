"""Word vectors scored by gensim's own evaluators, and written in gensim's formats.

No scoring code here is tying's: the vectors become a gensim ``KeyedVectors`` and gensim's
``evaluate_word_pairs`` (Spearman's rho against WordSim-353 and SimLex-999) and
``evaluate_word_analogies`` (the Google analogy set: accuracy over the questions whose four words
are all in the vocabulary) score them, on the files gensim's wheel ships under
``gensim/test/test_data/`` (found with ``gensim.test.utils.datapath``). Both evaluators compare
words case-insensitively (their default), as the published numbers do.

gensim is an optional dependency (the ``experiments`` extra); it is imported when a score is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

__all__ = [
    "WORD_PAIRS", "ANALOGIES", "WORDS_KEY", "NoOverlapError", "gensim_data", "keyed_vectors", "word_pair_spearman", "analogy_accuracy",
    "similarity_scores", "export_vectors", "vectors_of", "export_checkpoint",
]  # fmt: skip

class NoOverlapError(ValueError):
    """An evaluation file none of whose items (pairs, questions) is in the vocabulary."""


#: The checkpoint header entry holding the vocabulary, one word a line (the task writes it).
WORDS_KEY = "sgns.words"

#: Metric name -> the word-pair file of gensim's test data.
WORD_PAIRS = {"ws353": "wordsim353.tsv", "simlex": "simlex999.txt"}
#: The Google analogy questions of gensim's test data.
ANALOGIES = "questions-words.txt"


def _gensim() -> Any:
    try:
        import gensim.models
        import gensim.test.utils
    except ImportError as error:  # pragma: no cover - gensim is installed with the experiments extra
        raise ImportError("scoring word vectors needs gensim: pip install 'tying[experiments]'") from error
    return gensim


def gensim_data(name: str) -> str:
    """The path of ``name`` among the files gensim's wheel ships for its tests."""
    return str(_gensim().test.utils.datapath(name))


def keyed_vectors(words: list[str], vectors: torch.Tensor) -> KeyedVectors:
    """gensim ``KeyedVectors`` holding row ``i`` of ``vectors`` as the vector of ``words[i]``."""
    if vectors.dim() != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"vectors of shape {list(vectors.shape)} for {len(words)} words; need one row per word")
    kv = _gensim().models.KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors.detach().cpu().float().numpy())
    return kv


def word_pair_spearman(kv: KeyedVectors, file: str | os.PathLike[str]) -> tuple[float, float]:
    """Spearman's rho of ``kv``'s cosine similarities against the human scores of ``file``
    (gensim's ``evaluate_word_pairs``), and the percentage of pairs skipped as out of vocabulary.

    Raises:
        NoOverlapError: no pair of ``file`` has both words in the vocabulary.
    """
    try:
        _, spearman, oov = kv.evaluate_word_pairs(str(file))
    except ValueError as error:
        raise NoOverlapError(f"{str(file)!r}: no word pair has both words among the {len(kv):,} words of the vocabulary") from error
    return float(spearman.statistic), float(oov)


def analogy_accuracy(kv: KeyedVectors, file: str | os.PathLike[str]) -> tuple[float, float]:
    """The share of analogy questions of ``file`` that ``kv`` answers right (gensim's
    ``evaluate_word_analogies``: among the questions whose four words are in the vocabulary),
    and the share of questions left out as out of vocabulary, both in percent.

    Raises:
        NoOverlapError: no question of ``file`` has all four words in the vocabulary.
    """
    with open(file, encoding="utf-8") as f:
        questions = sum(1 for line in f if line.strip() and not line.startswith(":"))
    score, sections = kv.evaluate_word_analogies(str(file))
    total = sections[-1]  # gensim's "Total accuracy" section
    asked = len(total["correct"]) + len(total["incorrect"])
    if not asked:
        raise NoOverlapError(f"{str(file)!r}: no analogy question has all four words among the {len(kv):,} words of the vocabulary")
    return 100.0 * float(score), 100.0 * (1 - asked / questions)


def similarity_scores(kv: KeyedVectors, *, analogies: bool = True) -> dict[str, float]:
    """``ws353`` and ``simlex`` (Spearman's rho) with their out-of-vocabulary shares
    (``<name>_oov``, percent), and with ``analogies`` the analogy accuracy ``analogy`` and its
    ``analogy_oov`` (percent). A score whose file has no item in the vocabulary is left out, with
    its out-of-vocabulary share at 100 (a small corpus need not hold the analogy set's words)."""
    checks = {name: (word_pair_spearman, file) for name, file in WORD_PAIRS.items()}
    if analogies:
        checks["analogy"] = (analogy_accuracy, ANALOGIES)
    scores: dict[str, float] = {}
    for name, (check, file) in checks.items():
        try:
            scores[name], scores[f"{name}_oov"] = check(kv, gensim_data(file))
        except NoOverlapError:
            scores[f"{name}_oov"] = 100.0
    return scores


def export_vectors(words: list[str], vectors: torch.Tensor, path: str | os.PathLike[str], *, binary: bool = False) -> KeyedVectors:
    """Write ``vectors`` (row ``i``: ``words[i]``) in word2vec's text format (``binary``: its
    binary format), which ``gensim.models.KeyedVectors.load_word2vec_format`` and most word-vector
    tools read; returns the ``KeyedVectors`` written."""
    kv = keyed_vectors(words, vectors)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    kv.save_word2vec_format(str(path), binary=binary)
    return kv


def vectors_of(checkpoint: str | os.PathLike[str]) -> tuple[list[str], torch.Tensor]:
    """The vocabulary and word vectors :math:`W` (``words.weight``) of an SGNS checkpoint the
    trainer wrote (``best.safetensors``, ``model-epoch005.safetensors``), whatever its tie."""
    from safetensors import safe_open

    from tying.checkpoint import read_checkpoint

    metadata = read_checkpoint(checkpoint).metadata
    if WORDS_KEY not in metadata:
        raise ValueError(f"{str(checkpoint)!r} has no {WORDS_KEY!r} entry in its header: not a checkpoint of the sgns task")
    with safe_open(str(checkpoint), framework="pt") as f:
        vectors = f.get_tensor("words.weight")
    return metadata[WORDS_KEY].split("\n"), vectors


def export_checkpoint(checkpoint: str | os.PathLike[str], path: str | os.PathLike[str], *, binary: bool = False) -> KeyedVectors:
    """:func:`export_vectors` of the word vectors of an SGNS checkpoint (:func:`vectors_of`)."""
    words, vectors = vectors_of(checkpoint)
    return export_vectors(words, vectors, path, binary=binary)
