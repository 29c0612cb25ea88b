"""Parallel corpora (bitext) in the Multi30k layout, and a built-in one that needs no download.

A bitext folder holds one plain-text file per split and language, ``{split}.{lang}``
(``train.en``, ``train.de``, ``valid.en`` ... ``test.de``); line *i* of the source file and line
*i* of the target file are translations of each other. This is the layout of the raw Multi30k
task 1 files (Elliott et al. 2016, arXiv 1605.00459: 29,000 / 1,014 / 1,000 sentence pairs;
``test`` is test_2016_flickr) and of their lower-cased, tokenised ``tok/`` copies. Text is read
as is (raw, cased, untokenised): subword vocabularies (:mod:`tying.tasks.translation.subword`) handle the
rest, and BLEU is computed on detokenised output against these raw references.

:func:`builtin_bitext` generates a small English→German corpus from a grammar, the same on
every machine, so tests and demos run without the real data.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from tying.data.files import SPLITS, DataError

__all__ = ["Bitext", "BitextError", "read_bitext", "builtin_bitext"]


class BitextError(DataError):
    """A bitext folder whose files cannot be read as aligned sentence pairs."""


@dataclass(frozen=True)
class Bitext:
    """Aligned sentence pairs per split.

    Attributes:
        name: where the text came from (a folder, or ``"builtin"``).
        src_lang, tgt_lang: language codes, the file suffixes.
        splits: split name -> ``(source lines, target lines)``, of equal length, newlines stripped.
    """

    name: str
    src_lang: str
    tgt_lang: str
    splits: dict[str, tuple[list[str], list[str]]]

    def source(self, split: str) -> list[str]:
        return self._split(split)[0]

    def target(self, split: str) -> list[str]:
        return self._split(split)[1]

    def _split(self, split: str) -> tuple[list[str], list[str]]:
        if split not in self.splits:
            raise KeyError(f"bitext {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(src):,}" for s, (src, _) in self.splits.items())
        return f"Bitext({self.name!r}, {self.src_lang}->{self.tgt_lang}, {sizes})"


def _read_lines(file: Path) -> list[str]:
    try:
        with file.open(encoding="utf-8", newline="\n") as f:
            return [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError as exc:
        raise BitextError(f"{str(file)!r} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc


def read_bitext(folder: str | os.PathLike[str], src_lang: str = "en", tgt_lang: str = "de", splits: tuple[str, ...] = SPLITS) -> Bitext:
    """The sentence pairs of ``{split}.{src_lang}`` / ``{split}.{tgt_lang}`` in ``folder``.

    Raises:
        FileNotFoundError: the folder or one of its files is missing (all missing files named).
        BitextError: a file is not UTF-8, or the two files of a split differ in line count.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"bitext folder {str(root)!r} does not exist; it must hold {{train,valid,test}}.{{{src_lang},{tgt_lang}}}")
    files = {split: (root / f"{split}.{src_lang}", root / f"{split}.{tgt_lang}") for split in splits}
    missing = [str(f) for pair in files.values() for f in pair if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"bitext file(s) {', '.join(map(repr, missing))} missing")
    pairs = {}
    for split, (src_file, tgt_file) in files.items():
        src, tgt = _read_lines(src_file), _read_lines(tgt_file)
        if len(src) != len(tgt):
            raise BitextError(
                f"{str(src_file)!r} has {len(src):,} lines but {str(tgt_file)!r} has {len(tgt):,}; line i of each must translate the other"
            )
        pairs[split] = (src, tgt)
    return Bitext(str(root), src_lang, tgt_lang, pairs)


# The built-in corpus: "<subject> <verb> <object> <place>." with German agreement (article gender,
# accusative object, dative place) written out per phrase, so the pairs are correct German.
_SUBJECTS = [
    ("A man", "Ein Mann"), ("A woman", "Eine Frau"), ("A child", "Ein Kind"), ("The dog", "Der Hund"),
    ("Two men", "Zwei Männer"), ("A young girl", "Ein junges Mädchen"), ("The old man", "Der alte Mann"),
    ("A boy", "Ein Junge"), ("The woman", "Die Frau"), ("A group of people", "Eine Gruppe von Menschen"),
]  # fmt: skip
_VERBS = [("holds", "hält", "hold", "halten"), ("sees", "sieht", "see", "sehen"), ("carries", "trägt", "carry", "tragen"),
          ("throws", "wirft", "throw", "werfen"), ("finds", "findet", "find", "finden"), ("paints", "malt", "paint", "malen")]  # fmt: skip
_OBJECTS = [
    ("a ball", "einen Ball"), ("a red ball", "einen roten Ball"), ("a book", "ein Buch"), ("a bag", "eine Tasche"),
    ("the flowers", "die Blumen"), ("a small dog", "einen kleinen Hund"), ("a blue bicycle", "ein blaues Fahrrad"),
    ("a picture", "ein Bild"), ("the hat", "den Hut"), ("a large box", "eine große Kiste"),
]  # fmt: skip
_PLACES = [
    ("", ""), ("in the park", "im Park"), ("on the street", "auf der Straße"), ("at the beach", "am Strand"),
    ("in the snow", "im Schnee"), ("near the water", "in der Nähe des Wassers"), ("in front of a building", "vor einem Gebäude"),
]  # fmt: skip


def _sentence(rng: random.Random) -> tuple[str, str]:
    (s_en, s_de), (v_en, v_de, v_en_pl, v_de_pl), (o_en, o_de), (p_en, p_de) = (
        rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_PLACES),
    )  # fmt: skip
    plural = s_en.startswith("Two")
    en = " ".join(filter(None, (s_en, v_en_pl if plural else v_en, o_en, p_en))) + "."
    de = " ".join(filter(None, (s_de, v_de_pl if plural else v_de, o_de, p_de))) + "."
    return en, de


def builtin_bitext(sizes: tuple[int, int, int] = (2000, 100, 100), seed: int = 0) -> Bitext:
    """A generated English→German corpus of short sentences (10 subjects x 6 verbs x 10 objects x
    7 places), ``sizes`` pairs for train/valid/test, the same
    for the same arguments. A tiny Transformer learns it to high BLEU in a minute on one core."""
    rng = random.Random(seed)
    splits = {}
    for split, n in zip(SPLITS, sizes, strict=True):
        pairs = [_sentence(rng) for _ in range(n)]
        splits[split] = ([en for en, _ in pairs], [de for _, de in pairs])
    return Bitext("builtin", "en", "de", splits)
