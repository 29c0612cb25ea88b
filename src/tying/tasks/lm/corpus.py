"""Word-level language-modelling corpora in the standard three-file layout.

A corpus folder holds ``train.txt``, ``valid.txt`` and ``test.txt``: one sentence per line,
words separated by whitespace, already normalised (PTB, WikiText-2 and the built-in
:mod:`tying.tasks.lm.stdlib_docs` corpus all look like this). Each line becomes its words followed
by ``<eos>``, the convention of Mikolov's PTB setup and pytorch/examples
``word_language_model``, so the split sizes here match the published token counts
(PTB: 929,589 / 73,760 / 82,430).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tying.data.files import SPLITS, DataError
from tying.data.vocab import EOS, UNK, Dictionary
from tying.tasks.lm.stdlib_docs import builtin_corpus_dir

__all__ = ["SPLITS", "CorpusError", "Corpus", "load_corpus"]

class CorpusError(DataError):
    """A corpus file that cannot be tokenised against the training vocabulary."""


class Corpus:
    """The three splits of a corpus folder as 1-D ``int64`` token-id tensors.

    The vocabulary is built from ``train.txt`` alone, so a model never gets an embedding row for
    a word it cannot be trained on. Words of ``valid.txt``/``test.txt`` missing from it map to
    ``<unk>`` when the training text has that type (PTB and WikiText-2 do, and have no such words
    anyway); otherwise :class:`CorpusError` names the file, line and word.

    Attributes:
        path: the corpus folder.
        dictionary: the training vocabulary (``<eos>`` included).
        train, valid, test: token ids of each split, ``<eos>`` closing every line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"corpus folder {str(self.path)!r} does not exist; it must hold train.txt, valid.txt and test.txt"
            )
        files = {split: self.path / f"{split}.txt" for split in SPLITS}
        missing = [str(f) for f in files.values() if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"corpus file(s) {', '.join(map(repr, missing))} missing; a corpus folder holds train.txt, valid.txt and test.txt"
            )
        self.dictionary = Dictionary()
        self.train = self._tokenize(files["train"], grow=True)
        if not self.train.numel():
            raise CorpusError(f"{str(files['train'])!r} is empty; the vocabulary is built from it")
        self.valid = self._tokenize(files["valid"], grow=False)
        self.test = self._tokenize(files["test"], grow=False)

    def _tokenize(self, file: Path, *, grow: bool) -> torch.Tensor:
        ids: list[int] = []
        if grow:
            add = self.dictionary.add_word
            with file.open(encoding="utf-8") as f:
                for line in f:
                    ids.extend(map(add, line.split()))
                    ids.append(add(EOS))
        else:
            lookup = self.dictionary.word2idx
            eos, unk = lookup[EOS], lookup.get(UNK)
            with file.open(encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    for word in line.split():
                        idx = lookup.get(word, unk)
                        if idx is None:
                            raise CorpusError(
                                f"{str(file)!r} line {lineno}: word {word!r} does not occur in "
                                f"{str(self.path / 'train.txt')!r} and the vocabulary has no {UNK!r} type to map it to; "
                                f"replace rare words by {UNK!r} in all three files (as PTB does)"
                            )
                        ids.append(idx)
                    ids.append(eos)
        return torch.tensor(ids, dtype=torch.int64)

    def __repr__(self) -> str:
        return (
            f"Corpus({str(self.path)!r}, vocab={len(self.dictionary):,}, train={self.train.numel():,}, "
            f"valid={self.valid.numel():,}, test={self.test.numel():,})"
        )


def load_corpus(path: str | os.PathLike[str] | None = None) -> Corpus:
    """The corpus in folder ``path``, or the built-in standard-library docstring corpus when
    ``path`` is None (built once into the cache, see :func:`tying.tasks.lm.builtin_corpus_dir`)."""
    return Corpus(builtin_corpus_dir() if path is None else path)
