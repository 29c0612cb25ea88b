"""The built-in corpus: docstrings of the running interpreter's standard library.

It needs no download: every CPython installation carries the text. Two sources, both *parsed*
with :mod:`ast`, never imported (importing e.g. ``antigravity`` or ``this`` has side effects):
:func:`ast.get_docstring` of every module, class and function of the library's ``.py`` files
(tests, GUI demos, ``lib2to3`` and ``site-packages`` left out), and the help topics of
``pydoc_data/topics.py`` (the language-reference sections that ``help("if")`` shows), about
0.3 M and 0.1 M tokens on CPython 3.11.

Normalisation follows Mikolov's PTB preprocessing where it applies: lower case, numbers
replaced by ``N``, one sentence per line, vocabulary capped at 10,000 types (``<eos>`` and
``<unk>`` included) with every other word replaced by ``<unk>``. Unlike PTB, punctuation is kept,
split from the words, since it carries much of the structure of technical prose. Doctest
examples (from a ``>>>`` line to the end of its paragraph) and repeated docstrings are dropped.

The unit of the train/valid/test split is a *document*: a module docstring, a top-level
statement of a module with the docstrings of everything defined inside it, or one help topic.
A CRC-32 of its qualified name sends 1/20 of the documents to valid, 1/20 to test and the rest
to train, so the split is the same on every machine with the same Python, and fine-grained
enough for the split sizes to come out near 90/5/5.
The result is written once per interpreter version to the cache folder (see
:func:`default_cache_dir`) and read back with :class:`tying.tasks.lm.Corpus` like any other corpus.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tying.data.files import default_cache_dir
from tying.data.vocab import UNK

__all__ = ["VOCAB_SIZE", "builtin_corpus_dir", "build_stdlib_corpus", "tokenize"]

#: Types in the vocabulary, ``<eos>`` and ``<unk>`` included (as PTB's 10k).
VOCAB_SIZE = 10_000
# Bump when the text produced changes, so stale caches are not read.
_FORMAT = 1
# Folders that hold tests, GUI demos, third-party packages or data rather than library prose.
_SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "site-packages", "dist-packages", "ensurepip", "__pycache__"}
)

_TOKEN = re.compile(r"[^\W\d]\w*(?:'\w+)*|\d+(?:[.,]\d+)*|[^\w\s]")
_NUMBER = re.compile(r"\d")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def builtin_corpus_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the built-in corpus for this interpreter, building it on first use
    (a few seconds). ``cache_dir`` defaults to :func:`default_cache_dir`."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    v = sys.version_info
    folder = root / f"stdlib-docs-v{_FORMAT}-{sys.implementation.name}{v.major}.{v.minor}.{v.micro}"
    if folder.is_dir():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    # Build beside the destination and rename, so a crash or a concurrent build never leaves a
    # half-written corpus under the final name.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        build_stdlib_corpus(tmp)
        tmp.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tokenize(text: str) -> list[str]:
    """Lower-cased word, number and punctuation tokens of ``text``; numbers become ``N``.

    >>> tokenize("Return the 2nd item, e.g. x[1].")
    ['return', 'the', 'N', 'nd', 'item', ',', 'e', '.', 'g', '.', 'x', '[', 'N', ']', '.']
    """
    return ["N" if _NUMBER.match(t) else t for t in _TOKEN.findall(text.lower())]


def build_stdlib_corpus(dest: str | os.PathLike[str], stdlib: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """Write ``train.txt``, ``valid.txt`` and ``test.txt`` of the docstring corpus of the
    standard library at ``stdlib`` (default: this interpreter's) into folder ``dest``.

    Returns the number of lines per split.
    """
    splits: dict[str, list[list[str]]] = {"train": [], "valid": [], "test": []}
    seen: set[str] = set()
    for name, path in _stdlib_modules(Path(stdlib or sysconfig.get_paths()["stdlib"])):
        for key, texts in _documents(name, path):
            lines = splits[_split_of(key)]
            for text in texts:
                if text not in seen:
                    seen.add(text)
                    lines.extend(_sentences(text))
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


def _split_of(document: str) -> str:
    bucket = zlib.crc32(document.encode()) % 20
    return "valid" if bucket == 0 else "test" if bucket == 1 else "train"


def _documents(module: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """``(qualified name, texts)`` of the documents of one source file (see the module doc)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):  # sources written for another Python version, stray bytes
        return
    if module == "pydoc_data.topics":
        # One assignment ``topics = {name: text, ...}`` of literals.
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict):
                for topic, text in ast.literal_eval(stmt.value).items():
                    yield f"{module}:{topic}", [text]
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield module, [doc]
    for stmt in tree.body:
        texts = [
            doc
            for node in ast.walk(stmt)
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (doc := ast.get_docstring(node))
        ]
        if texts:
            yield f"{module}:{getattr(stmt, 'name', stmt.lineno)}", texts


def _sentences(doc: str) -> Iterator[list[str]]:
    """Token lists of the sentences of a docstring, doctest examples left out."""
    for paragraph in _PARAGRAPH.split(doc):
        prose = []
        for line in paragraph.splitlines():
            if line.lstrip().startswith(">>>"):
                break
            prose.append(line.strip())
        for sentence in _SENTENCE_END.split(" ".join(prose)):
            tokens = tokenize(sentence)
            if tokens:
                yield tokens
