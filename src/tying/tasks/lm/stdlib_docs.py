"""The built-in corpus: a frozen snapshot of the Python standard library's docstrings.

``tying demo`` and every recipe with ``data.corpus = "builtin"`` train on it: no download, and
the same text, hence the same numbers, on every machine whatever Python runs it. The snapshot
ships inside the package as ``tying/tasks/lm/stdlib-docs/{train,valid,test}.txt.gz``, made once by
``scripts/build_builtin_corpus.py`` with :func:`build_stdlib_corpus`; the ``README.md`` beside
it names the CPython release it was taken from, its sizes and checksums, and its licence (the
PSF licence, ``LICENSE.txt`` beside it). :func:`builtin_corpus_dir` unpacks it once into the
cache folder, where :class:`tying.tasks.lm.Corpus` reads it like any other corpus folder.

How :func:`build_stdlib_corpus` makes the text. Two sources, both *parsed* with :mod:`ast`,
never imported (importing e.g. ``antigravity`` or ``this`` has side effects):
:func:`ast.get_docstring` of every module, class and function of the library's ``.py`` files
(tests, GUI demos, ``lib2to3`` and ``site-packages`` left out), and the help topics of
``pydoc_data/topics.py`` (the language-reference sections that ``help("if")`` shows).
Normalisation follows Mikolov's PTB preprocessing where it applies: lower case, numbers replaced
by ``N``, one sentence per line, vocabulary capped at 10,000 types (``<eos>`` and ``<unk>``
included) with every other word replaced by ``<unk>``. Unlike PTB, punctuation is kept, split
from the words (a run of one character, ``...`` or ``**``, is one token), since it carries much
of the structure of technical prose. Dropped: doctest examples (from a ``>>>`` line to the end of
its paragraph), table and rule lines (starting with ``+`` or ``|``, or punctuation only: a
table border tokenised character by character made "sentences" of 2,000 ``-`` tokens), and
repeated docstrings.

The unit of the train/valid/test split is the *sentence*: a SHA-256 of its text sends 1/20 of
the sentences to valid, 1/20 to test and the rest to train (each split keeps the library's
order). Identical sentences share a split, and the split depends on nothing but the text. The
first version split whole modules and help topics instead: a handful of large classes and
topics landed in valid or test, and the demo's validation perplexity came out 31% above its
test perplexity (96 against 73).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import os
import re
import shutil
import sysconfig
import tempfile
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from tying.data.files import default_cache_dir
from tying.data.vocab import UNK

__all__ = ["VOCAB_SIZE", "snapshot_dir", "builtin_corpus_dir", "build_stdlib_corpus", "tokenize"]

#: Types in the vocabulary, ``<eos>`` and ``<unk>`` included (as PTB's 10k).
VOCAB_SIZE = 10_000
_SPLITS = ("train", "valid", "test")
# Folders that hold tests, GUI demos, third-party packages or data rather than library prose.
_SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "site-packages", "dist-packages", "ensurepip", "__pycache__"}
)

_TOKEN = re.compile(r"[^\W\d]\w*(?:'\w+)*|\d+(?:[.,]\d+)*|([^\w\s])\1*")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# reST table rows and borders (``+---+``, ``| a | b |``) and rules (``=====``, ``-----``).
_TABLE_OR_RULE = re.compile(r"\s*(?:[+|].*|[^\w\s]+)\s*")


def snapshot_dir() -> Path:
    """The folder of the shipped snapshot: ``train.txt.gz``, ``valid.txt.gz``, ``test.txt.gz``,
    its ``README.md`` (provenance) and ``LICENSE.txt``."""
    return Path(str(resources.files("tying.tasks.lm") / "stdlib-docs"))


def builtin_corpus_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the built-in corpus, unpacked from the package on first use (a second).

    The folder is named after a SHA-256 of the shipped files, so a new snapshot never reads a
    stale copy. ``cache_dir`` defaults to :func:`default_cache_dir`.
    """
    source = snapshot_dir()
    files = [source / f"{split}.txt.gz" for split in _SPLITS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"built-in corpus file(s) {', '.join(map(repr, missing))} missing from the tying package; reinstall it")
    digest = hashlib.sha256(b"".join(hashlib.sha256(f.read_bytes()).digest() for f in files)).hexdigest()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / f"stdlib-docs-{digest[:12]}"
    if folder.is_dir():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    # Unpack beside the destination and rename, so a crash or a concurrent unpack never leaves a
    # half-written corpus under the final name.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        for split, file in zip(_SPLITS, files, strict=True):
            with gzip.open(file, "rb") as src, (tmp / f"{split}.txt").open("wb") as dst:
                shutil.copyfileobj(src, dst)
        tmp.rename(folder)
    except OSError:
        if not folder.is_dir():  # another process may have unpacked it first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tokenize(text: str) -> list[str]:
    """Lower-cased word, number and punctuation tokens of ``text``; numbers become ``N``; a run
    of one punctuation character is one token.

    >>> tokenize("Return the 2nd item, e.g. x[1]...")
    ['return', 'the', 'N', 'nd', 'item', ',', 'e', '.', 'g', '.', 'x', '[', 'N', ']', '...']
    """
    return ["N" if t[0].isdigit() else t for t in (m.group(0) for m in _TOKEN.finditer(text.lower()))]


def build_stdlib_corpus(dest: str | os.PathLike[str], stdlib: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """Write ``train.txt``, ``valid.txt`` and ``test.txt`` of the docstring corpus of the
    standard library at ``stdlib`` (default: the running interpreter's) into folder ``dest``.

    Returns the number of lines (sentences) per split.
    """
    splits: dict[str, list[list[str]]] = {split: [] for split in _SPLITS}
    seen: set[str] = set()
    for name, path in _stdlib_modules(Path(stdlib or sysconfig.get_paths()["stdlib"])):
        for text in _docstrings(name, path):
            if text not in seen:
                seen.add(text)
                for sentence in _sentences(text):
                    splits[_split_of(sentence)].append(sentence)
    counts = Counter(word for line in splits["train"] for word in line)
    # Keep at least one type out so that <unk> occurs in train and can stand for the valid/test
    # words train never saw.
    keep_n = min(VOCAB_SIZE - 2, len(counts) - 1)
    keep = {w for w, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:keep_n]}
    dest = Path(dest)
    for split, lines in splits.items():
        with (dest / f"{split}.txt").open("w", encoding="utf-8") as f:
            f.writelines(" ".join(w if w in keep else UNK for w in line) + "\n" for line in lines)
    return {split: len(lines) for split, lines in splits.items()}


def _stdlib_modules(root: Path) -> Iterator[tuple[str, Path]]:
    """``(dotted module name, source path)`` of every library ``.py`` file, in sorted order."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(("config-", "test_")))
        for file in sorted(files):
            if file.endswith(".py") and not file.startswith("test_"):
                parts = Path(folder, file).relative_to(root).with_suffix("").parts
                yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), Path(folder, file)


def _split_of(sentence: list[str]) -> str:
    """The split of a sentence, from its text alone (SHA-256: the same on every platform)."""
    bucket = int.from_bytes(hashlib.sha256(" ".join(sentence).encode()).digest()[:8], "big") % 20
    return "valid" if bucket == 0 else "test" if bucket == 1 else "train"


def _docstrings(module: str, path: Path) -> Iterator[str]:
    """The docstrings of one source file, module first, then in the order of the source; the
    help topics' texts for ``pydoc_data.topics``."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):  # sources written for another Python version, stray bytes
        return
    if module == "pydoc_data.topics":
        # One assignment ``topics = {name: text, ...}`` of literals.
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict):
                yield from ast.literal_eval(stmt.value).values()
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield doc
    for stmt in tree.body:
        for node in ast.walk(stmt):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (doc := ast.get_docstring(node)):
                yield doc


def _sentences(doc: str) -> Iterator[list[str]]:
    """Token lists of the sentences of a docstring; doctest examples, tables and rules left out."""
    for paragraph in _PARAGRAPH.split(doc):
        prose = []
        for line in paragraph.splitlines():
            if line.lstrip().startswith(">>>"):
                break
            if not _TABLE_OR_RULE.fullmatch(line):
                prose.append(line.strip())
        for sentence in _SENTENCE_END.split(" ".join(prose)):
            tokens = tokenize(sentence)
            if tokens:
                yield tokens
