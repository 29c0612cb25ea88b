"""Fixtures shared across the test tree: a tiny synthetic corpus and the real benchmark data."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

# The CI clone has ../shared beside the repository; tests needing it skip elsewhere.
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def write_tiny_corpus(folder: Path, seed: int = 0, lines: tuple[int, int, int] = (600, 80, 80)) -> Path:
    """A corpus folder of short sentences from a small grammar (26 word types), learnable in seconds."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the bird", "my friend", "the model"]
    verbs = ["sees", "likes", "eats", "trains", "finds"]
    objects = ["the fish", "a ball", "the data", "some bread", "the tree"]
    endings = ["today", "again", "quickly", "at home", ""]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines, strict=True):
        text = "".join(
            " ".join(filter(None, (rng.choice(subjects), rng.choice(verbs), rng.choice(objects), rng.choice(endings)))) + "\n"
            for _ in range(n)
        )
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def tiny_corpus_dir(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "tiny")


@pytest.fixture
def shared_data() -> Path:
    """The benchmark data folder (PTB, WikiText-2); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA.resolve()
