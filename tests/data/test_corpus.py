"""Corpus reading, the built-in standard-library corpus and BPTT batching."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import platform
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from tying.data import EOS, UNK, Dictionary, default_cache_dir
from tying.tasks.lm import (
    VOCAB_SIZE,
    BPTTBatches,
    Corpus,
    CorpusError,
    batchify,
    build_stdlib_corpus,
    builtin_corpus_dir,
    load_corpus,
    snapshot_dir,
    tokenize,
)

ROOT = Path(__file__).resolve().parents[2]


def _write(folder: Path, train: str, valid: str, test: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- Dictionary / Corpus


def test_dictionary_ids_follow_first_appearance() -> None:
    d = Dictionary()
    assert [d.add_word(w) for w in ["b", "a", "b", "c"]] == [0, 1, 0, 2]
    assert d.idx2word == ["b", "a", "c"] and len(d) == 3 and "a" in d and "z" not in d


def test_corpus_appends_eos_per_line_and_builds_vocab_from_train(tmp_path: Path) -> None:
    c = Corpus(_write(tmp_path, "a b\n\nb c a\n", "c a\n", "b\n"))
    assert c.dictionary.idx2word == ["a", "b", EOS, "c"]
    assert c.train.tolist() == [0, 1, 2, 2, 1, 3, 0, 2]  # the empty line still ends with <eos>
    assert c.valid.tolist() == [3, 0, 2] and c.test.tolist() == [1, 2]
    assert c.train.dtype == c.valid.dtype == c.test.dtype == torch.int64
    assert load_corpus(tmp_path).train.tolist() == c.train.tolist()


def test_unseen_words_map_to_unk_when_train_has_it(tmp_path: Path) -> None:
    c = Corpus(_write(tmp_path, f"a {UNK} b\n", "a zebra\n", "yak b\n"))
    unk = c.dictionary.word2idx[UNK]
    assert c.valid.tolist() == [0, unk, c.dictionary.word2idx[EOS]]
    assert c.test.tolist()[0] == unk


def test_unseen_word_without_unk_names_file_line_and_word(tmp_path: Path) -> None:
    _write(tmp_path, "a b\n", "a\nb zebra\n", "a\n")
    with pytest.raises(CorpusError, match=r"valid\.txt' line 2: word 'zebra' does not occur in .*train\.txt.*'<unk>'"):
        Corpus(tmp_path)


def test_missing_folder_and_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        Corpus(tmp_path / "nope")
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match=r"valid\.txt'.*test\.txt'.*missing"):
        Corpus(tmp_path)


def test_empty_train_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"train\.txt' is empty"):
        Corpus(_write(tmp_path, "", "a\n", "a\n"))


# --------------------------------------------------------------------------- real benchmark data


@pytest.mark.parametrize(
    ("name", "vocab", "sizes"),
    [("ptb", 10_000, (929_589, 73_760, 82_430)), ("wikitext-2", 33_278, (2_088_628, 217_646, 245_569))],
)
def test_benchmark_sizes_match_published_counts(shared_data: Path, name: str, vocab: int, sizes: tuple[int, int, int]) -> None:
    c = Corpus(shared_data / name)
    assert len(c.dictionary) == vocab
    assert (c.train.numel(), c.valid.numel(), c.test.numel()) == sizes


# --------------------------------------------------------------------------- built-in corpus


def test_tokenize_lowercases_splits_punctuation_and_maps_numbers() -> None:
    assert tokenize("Return the 2nd item, e.g. x[1].") == [
        "return", "the", "N", "nd", "item", ",", "e", ".", "g", ".", "x", "[", "N", "]", ".",
    ]  # fmt: skip
    assert tokenize("Don't use 3.14 or 1,000") == ["don't", "use", "N", "or", "N"]
    # A run of one punctuation character is one token (a table border is not 40 tokens of '-').
    assert tokenize("f(**kw)... a ---- b -+-") == ["f", "(", "**", "kw", ")", "...", "a", "----", "b", "-", "+", "-"]


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TYING_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("TYING_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "x" / "tying"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tying"


def _fake_stdlib(root: Path) -> Path:
    """A miniature library tree: prose to keep, doctests and tables to drop, folders to skip."""
    files = {
        "alpha.py": '"""Alpha module. It has 2 lines of prose.\n\n>>> alpha()\n42\n"""\n\ndef f():\n    """Return 7 things."""\n',
        "beta.py": 'class B:\n    """Beta class.\n\n    Its method is g.\n    """\n    def g(self):\n        """Return 7 things."""\n',
        "gamma.py": 'def h():\n    """Gamma table.\n\n    +-----+-----+\n    | SECRET | cell |\n    +=====+=====+\n    =====\n    """\n',
        "broken.py": "def oops(:\n",
        "pkg/__init__.py": '"""The pkg package!"""\n',
        "test/test_alpha.py": '"""SECRET test text."""\n',
        "idlelib/x.py": '"""SECRET idle text."""\n',
        "site-packages/y.py": '"""SECRET third party."""\n',
        "pydoc_data/topics.py": "topics = {'if': 'The if statement\\n\\nIt selects one suite.'}\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_build_from_a_fake_stdlib_keeps_prose_and_skips_the_rest(tmp_path: Path) -> None:
    stdlib = _fake_stdlib(tmp_path / "lib")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert build_stdlib_corpus(tmp_path / "a", stdlib) == {"train": 8, "valid": 1, "test": 0}  # 9 sentences
    build_stdlib_corpus(tmp_path / "b", stdlib)
    texts = {s: (tmp_path / "a" / f"{s}.txt").read_text() for s in ("train", "valid", "test")}
    assert texts == {s: (tmp_path / "b" / f"{s}.txt").read_text() for s in ("train", "valid", "test")}  # deterministic
    lines = sorted(line for t in texts.values() for line in t.splitlines())
    words = " ".join(lines).split()
    assert "secret" not in words and "42" not in words and ">" not in words  # skipped folders, table, doctest gone
    assert "-" not in words and "=" not in words and "|" not in words  # table borders and rules gone
    assert texts["valid"] == "<unk> <unk> .\n"  # "Gamma table.", its words unseen in train
    assert "alpha" in words and "N" in words and "pkg" in words and "suite" in words
    assert sum(line.startswith("return N") for line in lines) == 1  # a repeated docstring is kept once
    assert "alpha module ." in lines and "it has N lines of prose ." in lines  # one sentence per line
    assert all(w == "N" or w == w.lower() for w in words)


def test_the_split_of_a_sentence_depends_on_its_text_alone(tmp_path: Path) -> None:
    """Sentence by sentence, by a hash of the text: the same sentence lands in the same split
    wherever it occurs, and a sentence's split does not move when the library around it changes."""
    stdlib = tmp_path / "lib"
    stdlib.mkdir()
    sentences = [f"Sentence number {word} is here." for word in ("one two three four five six seven eight nine ten eleven twelve".split())]
    sentences *= 5  # a 60-sentence docstring, each sentence 5 times (repeats of a whole docstring are dropped, of a sentence not)
    (stdlib / "m.py").write_text('"""' + " ".join(sentences) + '"""\n', encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    counts = build_stdlib_corpus(out, stdlib)
    assert sum(counts.values()) == 60 and all(n % 5 == 0 for n in counts.values())  # each sentence's 5 copies together
    lines = {split: (out / f"{split}.txt").read_text().splitlines() for split in ("train", "valid", "test")}
    assert all(lines[split].count(line) % 5 == 0 for split in lines for line in lines[split])
    assert counts["valid"] + counts["test"] > 0  # 12 sentences, 1 in 10 held out: here some are
    (stdlib / "other.py").write_text('"""A quite different docstring. With its own sentences."""\n', encoding="utf-8")
    again = build_stdlib_corpus(out, stdlib)
    for split in ("train", "valid", "test"):  # the "sentence number ..." lines stay where they were
        assert sum(line.startswith("sentence") for line in (out / f"{split}.txt").read_text().splitlines()) == counts[split]
    assert sum(again.values()) == 62


@pytest.fixture(scope="session")
def builtin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return builtin_corpus_dir(tmp_path_factory.mktemp("cache"))


def test_builtin_corpus_is_the_shipped_snapshot_not_the_running_python(builtin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same text on every machine: the package's files, whatever Python reads them (version 1
    parsed the running interpreter's library, so every Python release gave other numbers)."""
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: pytest.fail("the built-in corpus read the live standard library"))
    folder = builtin_corpus_dir(tmp_path / "cache")
    for split in ("train", "valid", "test"):
        with gzip.open(snapshot_dir() / f"{split}.txt.gz", "rb") as f:
            assert (folder / f"{split}.txt").read_bytes() == f.read() == (builtin_dir / f"{split}.txt").read_bytes()
    digest = hashlib.sha256(b"".join(hashlib.sha256((snapshot_dir() / f"{s}.txt.gz").read_bytes()).digest() for s in ("train", "valid", "test")))
    assert folder.name == f"stdlib-docs-{digest.hexdigest()[:12]}"
    readme = (snapshot_dir() / "README.md").read_text()
    assert "PSF License Agreement" in readme and "Python Software Foundation" in (snapshot_dir() / "LICENSE.txt").read_text()
    c = Corpus(folder)  # the sizes its README states, on any Python
    for split in ("train", "valid", "test"):
        assert re.search(rf"\| {split} \| `{split}\.txt\.gz` \| [\d,]+ \| {getattr(c, split).numel():,} \|", readme)


def test_builtin_corpus_sizes_and_normalisation(builtin_dir: Path) -> None:
    c = Corpus(builtin_dir)
    total = c.train.numel() + c.valid.numel() + c.test.numel()
    assert 250_000 < total < 700_000
    assert c.train.numel() > 0.85 * total and c.valid.numel() > 0.04 * total and c.test.numel() > 0.04 * total
    assert len(c.dictionary) == VOCAB_SIZE and UNK in c.dictionary
    words = c.dictionary.idx2word
    assert all(w == w.lower() and not w[0].isdigit() for w in words if w != "N")  # numbers became N


def _unigram_ppl(train: torch.Tensor, text: torch.Tensor, vocab: int) -> float:
    counts = torch.bincount(train, minlength=vocab).double() + 1
    return math.exp(-(counts / counts.sum()).log()[text].mean().item())


def test_builtin_valid_and_test_are_alike(builtin_dir: Path) -> None:
    """Valid and test are drawn from the same text: their perplexities under the training
    unigram distribution are within 5% (splitting by module, version 1 had 457 against 344)."""
    c = Corpus(builtin_dir)
    valid, test = (_unigram_ppl(c.train, split, len(c.dictionary)) for split in (c.valid, c.test))
    assert abs(valid / test - 1) < 0.05, (valid, test)


def test_builtin_corpus_is_unpacked_once(builtin_dir: Path) -> None:
    stamp = (builtin_dir / "train.txt").stat().st_mtime_ns
    assert builtin_corpus_dir(builtin_dir.parent) == builtin_dir
    assert (builtin_dir / "train.txt").stat().st_mtime_ns == stamp
    assert not [p for p in os.listdir(builtin_dir.parent) if p.startswith(".")]  # no temporary folder left


def test_build_script_reproduces_the_shipped_snapshot(tmp_path: Path) -> None:
    """scripts/build_builtin_corpus.py from the library the snapshot names gives the same bytes."""
    readme = (snapshot_dir() / "README.md").read_text()
    source = re.search(r"docstrings \((\S+ \S+)\)", readme)
    assert source is not None
    if source.group(1) != f"{platform.python_implementation()} {platform.python_version()}":
        pytest.skip(f"the snapshot was built from {source.group(1)}; this is {platform.python_version()}")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_builtin_corpus.py"), "--dest", str(tmp_path / "snap")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == sorted(p.name for p in snapshot_dir().iterdir())
    for file in snapshot_dir().iterdir():
        assert (tmp_path / "snap" / file.name).read_bytes() == file.read_bytes(), file.name


# --------------------------------------------------------------------------- batching


def test_batchify_lays_contiguous_pieces_side_by_side() -> None:
    data = batchify(torch.arange(23), 4)
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]  # column b = b-th piece; the last 3 tokens dropped


def test_bptt_windows_cover_the_stream_with_shifted_targets() -> None:
    data = batchify(torch.arange(40), 2)  # 20 rows
    windows = list(BPTTBatches(data, 6))
    assert len(windows) == len(BPTTBatches(data, 6)) == 4
    assert [x.size(0) for x, _ in windows] == [6, 6, 6, 1]
    for x, y in windows:
        assert torch.equal(y, x + 1)  # next token in each piece
    assert torch.cat([x for x, _ in windows]).equal(data[:-1])
    assert torch.equal(BPTTBatches(data, 6)[3][1], data[19:])


def test_batching_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="fewer than 2 rows at batch size 8"):
        batchify(torch.arange(10), 8)
    with pytest.raises(ValueError, match="1-D token stream"):
        batchify(torch.zeros(2, 2), 1)
    with pytest.raises(ValueError, match="bptt must be at least 1"):
        BPTTBatches(torch.zeros(4, 2), 0)
    with pytest.raises(IndexError, match="window 9 out of range"):
        BPTTBatches(torch.zeros(4, 2), 2)[9]
