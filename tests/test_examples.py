"""The analysis scripts of ``examples/`` run end to end (on the tiny corpus, a few batches)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import tying

ROOT = Path(__file__).resolve().parents[1]


def test_projection_stall_prints_one_row_per_recipe(tiny_corpus_dir: Path) -> None:
    recipes = ["ptb-small-tied", "ptb-small-tied-pr-nobias"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "projection_stall.py"), "--batches", "4", "--recipes", *recipes,
         "--set", f"data.corpus={tiny_corpus_dir.as_posix()!r}", "--set", "train.bptt=5"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(Path(tying.__file__).parents[1])},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("ptb-small-")]
    assert [row.split()[0] for row in rows] == recipes
    # eigenvalue range (the tiny vocabulary is smaller than the width: some are 0), lr, share clipped,
    # two gradient norms, perplexity
    assert all(re.search(r"\| +-?[\d.]+ - [\d.]+ +\| +20 \| +\d+% \| +[\d.]+ \| +[\d.]+ \| +[\d,]+$", row) for row in rows), rows
