"""Freeze the built-in corpus: the docstrings of a CPython standard library, into the package.

Writes ``src/tying/tasks/lm/stdlib-docs/``: ``train.txt.gz``, ``valid.txt.gz`` and ``test.txt.gz``
(:func:`tying.tasks.lm.stdlib_docs.build_stdlib_corpus`, gzip without time stamp or file name, so the same
library gives the same bytes), the library's ``LICENSE.txt`` (the PSF licence and the licences
of the earlier releases it names) and a ``README.md`` stating where the text came from, how it
was changed (as clause 3 of the PSF licence asks of derived works), its sizes and checksums.

    python scripts/build_builtin_corpus.py            # from the running interpreter's library
    python scripts/build_builtin_corpus.py --stdlib /path/to/cpython/Lib --source "CPython 3.12.1"

The committed snapshot was built with CPython 3.11.7 (its README says so). Rebuilding it
changes the demo's numbers: regenerate ``docs/demo/`` afterwards (see the README).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import platform
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from tying.tasks.lm import Corpus
from tying.tasks.lm.stdlib_docs import VOCAB_SIZE, build_stdlib_corpus

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "tying" / "tasks" / "lm" / "stdlib-docs"
SPLITS = ("train", "valid", "test")
# The PSF's notice of copyright, quoted in clause 2 of its licence.
NOTICE = re.compile(r'"(Copyright \(c\) 2001,[^"]*Python Software Foundation;\s*All Rights Reserved)"')

README = """# The built-in corpus: Python standard-library docstrings ({source})

The corpus of `tying demo` and of recipes with `data.corpus = "builtin"`: the docstrings of the
standard library of {source} and its `pydoc` help topics (the language-reference sections that
`help("if")` shows), normalised and split by `tying.data.build_stdlib_corpus`. Made with
`python scripts/build_builtin_corpus.py{args}`; `tying.data.builtin_corpus_dir()` unpacks it into
the cache folder.

| split | file | sentences (lines) | tokens (with `<eos>`) | sha256 of the .gz |
|---|---|---:|---:|---|
{rows}

Vocabulary: {vocab:,} types (`<eos>` and `<unk>` included), from `train.txt` alone.

## Licence and changes

The text is taken from {source}: {notice}. It is distributed under the PSF License Agreement
(with the licences of the earlier releases it derives from): [`LICENSE.txt`](LICENSE.txt) is
that release's licence file, unchanged.
Changes made to the original text (a derived work in the sense of clause 3 of the PSF License
Agreement):

- only docstrings and help topics are kept, read with `ast` from the library's `.py` files
  (tests, `idlelib`, `tkinter`, `turtledemo`, `lib2to3`, `ensurepip` and third-party packages
  left out); repeated docstrings are kept once;
- doctest examples, reST table rows and borders and rule lines are removed;
- the text is lower-cased, split into sentences (one per line) and tokens (punctuation split
  from words; a run of one punctuation character is one token), and every number is replaced
  by `N`;
- words outside the {kept:,} most frequent of the training split are replaced by `<unk>`;
- the sentences are divided into train, valid and test by a SHA-256 of their text (1/20 each to
  valid and test), each split keeping the library's order.
"""


def _pack(plain: Path, packed: Path, split: str, tokens: int) -> str:
    """Gzip ``plain/<split>.txt`` into ``packed`` and return its README table row."""
    text = (plain / f"{split}.txt").read_bytes()
    with (packed / f"{split}.txt.gz").open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(text)
    digest = hashlib.sha256((packed / f"{split}.txt.gz").read_bytes()).hexdigest()
    lines = text.count(b"\n")
    return f"| {split} | `{split}.txt.gz` | {lines:,} | {tokens:,} | `{digest}` |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stdlib", type=Path, help="the library folder (default: the running interpreter's)")
    parser.add_argument("--source", help='what the library is, e.g. "CPython 3.12.1" (default: the running interpreter)')
    parser.add_argument("--dest", type=Path, default=DEST, help="output folder (default: the package's)")
    args = parser.parse_args(argv)
    if args.stdlib is not None and args.source is None:
        parser.error("--stdlib needs --source, the name and version of the Python it belongs to")
    stdlib = args.stdlib or Path(sysconfig.get_paths()["stdlib"])
    source = args.source or f"{platform.python_implementation()} {platform.python_version()}"
    licence = stdlib / "LICENSE.txt"
    if not licence.is_file():
        sys.exit(f"no LICENSE.txt in {str(stdlib)!r}: the corpus cannot ship without its licence")
    notice = NOTICE.search(licence.read_text(encoding="utf-8"))
    if notice is None:
        sys.exit(f"{str(licence)!r} has no PSF copyright notice: is it the licence of a CPython release?")
    given = f" --stdlib {args.stdlib} --source {source!r}" if args.stdlib else ""
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the destination and swapped in whole: an error leaves the old snapshot intact.
    with tempfile.TemporaryDirectory(dir=args.dest.parent, prefix=f".{args.dest.name}.") as tmp:
        plain, packed = Path(tmp, "plain"), Path(tmp, "packed")
        plain.mkdir()
        packed.mkdir()
        build_stdlib_corpus(plain, stdlib)
        corpus = Corpus(plain)
        assert len(corpus.dictionary) <= VOCAB_SIZE
        rows = [_pack(plain, packed, split, getattr(corpus, split).numel()) for split in SPLITS]
        shutil.copyfile(licence, packed / "LICENSE.txt")
        readme = README.format(
            source=source, args=given, notice=" ".join(notice.group(1).split()), rows="\n".join(rows), vocab=len(corpus.dictionary),
            kept=len(corpus.dictionary) - 2,
        )
        (packed / "README.md").write_text(readme, encoding="utf-8")
        if args.dest.exists():
            args.dest.rename(Path(tmp, "old"))
        packed.rename(args.dest)
    sizes = ", ".join(f"{split} {getattr(corpus, split).numel():,}" for split in SPLITS)
    print(f"wrote {args.dest}: vocabulary {len(corpus.dictionary):,}, tokens {sizes}")


if __name__ == "__main__":
    main()
