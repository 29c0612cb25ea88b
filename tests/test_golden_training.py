"""Golden numbers: training gives the losses recorded in ``tests/golden/training.json`` to the last
bit (the first 50 steps of an LSTM LM, a tied translation Transformer and a tied autoencoder, and
``tying demo --quick``), and every built-in recipe resolves to the tables of
``tests/golden/recipes.json``. Refactors of the engine and the tasks must keep both; a change meant
to alter results re-records them with ``OMP_NUM_THREADS=1 python tests/golden/make_golden.py``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden"


def _recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _recorder()
EXPECTED = json.loads(make_golden.TRAINING.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYING_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_golden.write_corpus(tmp_path / "corpus")


def _same_torch() -> None:
    """Skip where the numbers cannot be the same bits: another torch, or a CPU whose vector
    instructions (AVX2, AVX512) make torch pick other kernels."""
    if torch.__version__ != EXPECTED["torch"]:
        pytest.skip(f"golden numbers recorded with torch {EXPECTED['torch']}, this is {torch.__version__}")
    cpu = torch.backends.cpu.get_cpu_capability()
    if cpu != EXPECTED["cpu"]:
        pytest.skip(f"golden numbers recorded on a {EXPECTED['cpu']} CPU, this one is {cpu}: torch's kernels differ in the last bits")


@pytest.mark.parametrize("recipe", sorted(make_golden.RUNS))
def test_training_steps_give_the_recorded_losses(recipe: str, corpus: Path, tmp_path: Path) -> None:
    _same_torch()
    got = make_golden.train_steps(recipe, make_golden.RUNS[recipe], corpus, tmp_path / "run")
    expected = EXPECTED["runs"][recipe]
    assert got["losses"] == expected["losses"]  # repr of every step's loss: exact
    assert got == expected


def test_quick_demo_gives_the_recorded_numbers(corpus: Path, tmp_path: Path) -> None:
    _same_torch()
    assert make_golden.demo_numbers(corpus, tmp_path / "demo") == EXPECTED["demo_quick"]


#: Settings added to the tables since the snapshot, as every recipe resolves them (their defaults).
ADDED = {"train": {"device": "cpu"}}


def test_every_builtin_recipe_resolves_to_the_recorded_tables() -> None:
    recorded = json.loads(make_golden.RECIPES.read_text(encoding="utf-8"))
    now = make_golden.resolved_recipes()
    assert sorted(now) == sorted(recorded), "a recipe was added or removed: re-record tests/golden/recipes.json"
    for name, tables in recorded.items():
        assert now[name] == {**tables, **{t: {**tables[t], **added} for t, added in ADDED.items()}}, name
