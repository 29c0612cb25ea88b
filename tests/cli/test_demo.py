"""`tying demo --quick` end to end on a tiny corpus: two built-in recipes through the compare
runner and report writer; run again, a finished demo is reported again; no silent overwrite of
another; resume; the two runs side by side (--jobs); errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tying.cli.main import app
from tying.recipes import read_metrics
from tying.recipes.report import THROUGHPUT_NOTE

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def test_quick_demo_compares_the_two_builtin_recipes_with_the_compare_report(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["demo", "--quick", "--data", str(tiny_corpus_dir), "--out", str(out), "--epochs", "2"], env=WIDE)
    assert result.exit_code == 0, result.output
    for label in ("tied vs untied", "parameters", "unique parameters", "test ppl", "tokens/s", "wall time"):
        assert label in result.output
    assert " ".join(THROUGHPUT_NOTE.split()) in " ".join(result.output.split())  # the single-run tokens/s caveat
    assert sorted(p.name for p in out.iterdir()) == [
        "demo-tied", "demo-untied", "tying-demo-test-vs-params.png", "tying-demo-valid-ppl.png", "tying-demo.csv", "tying-demo.md",
    ]  # fmt: skip
    tied, untied = read_metrics(out / "demo-tied"), read_metrics(out / "demo-untied")
    assert tied["format"] == untied["format"] == 2  # the one record format of tying compare
    # --quick: 1 layer of 32 units; V from the corpus. Tying removes exactly one V x 32 matrix.
    V, h = tied["data"]["vocab_size"], 32
    lstm = 4 * h * (h + h + 2)
    assert untied["unique_parameters"] == 2 * V * h + lstm + V
    assert tied["unique_parameters"] == V * h + lstm + V
    assert tied["total_parameters"] == untied["total_parameters"] == untied["unique_parameters"]
    assert len(tied["history"]) == len(untied["history"]) == 2
    assert tied["command"].startswith("tying train demo-tied --set ") and "--set model.hidden_size=32" in tied["command"]
    assert (out / "demo-tied" / "best.safetensors").is_file() and (out / "demo-untied" / "train_state.safetensors").is_file()
    md = (out / "tying-demo.md").read_text()
    assert "| demo-tied | " in md and "| demo-untied | " in md and THROUGHPUT_NOTE in md


def test_demo_run_again_reports_a_finished_demo_and_refuses_other_options_unless_resumed_or_forced(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["demo", "--quick", "--data", str(tiny_corpus_dir), "--out", str(out)]
    assert runner.invoke(app, [*args, "--epochs", "1"]).exit_code == 0
    first = read_metrics(out / "demo-tied")
    stored = {p: p.read_bytes() for p in out.glob("demo-*/*") if p.is_file()}
    # The same command again (`make demo` twice): the finished runs are reported again, nothing trained.
    again = runner.invoke(app, [*args, "--epochs", "1"], env=WIDE)
    assert again.exit_code == 0, again.output
    assert "2 of 2 runs already finished" in again.output and "tied vs untied" in again.output
    assert {p: p.read_bytes() for p in out.glob("demo-*/*") if p.is_file()} == stored
    # Other options (more epochs) without --resume: refused, nothing touched.
    other = runner.invoke(app, [*args, "--epochs", "2"], env=WIDE)
    assert other.exit_code == 1
    assert "holds an earlier demo with other options or unfinished (runs demo-tied, demo-untied); pass --resume" in other.output
    assert read_metrics(out / "demo-tied") == first

    resumed = runner.invoke(app, [*args, "--epochs", "2", "--resume"], env=WIDE)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.output
    after = read_metrics(out / "demo-tied")
    assert [m["epoch"] for m in after["history"]] == [1, 2] and after["history"][0]["train_loss"] == first["history"][0]["train_loss"]

    forced = runner.invoke(app, [*args, "--epochs", "1", "--force"], env=WIDE)
    assert forced.exit_code == 0, forced.output
    fresh = read_metrics(out / "demo-tied")["history"]
    assert "resumed" not in forced.output and [m["epoch"] for m in fresh] == [1]
    assert fresh[0]["train_loss"] == first["history"][0]["train_loss"]  # started over, from the same seed


def test_quick_demo_defaults_to_its_own_folder(tiny_corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--quick writes runs/demo-quick, so a smoke test after `make demo` neither meets nor touches runs/demo."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--quick", "--data", str(tiny_corpus_dir), "--epochs", "1"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert read_metrics(tmp_path / "runs" / "demo-quick" / "demo-tied") is not None and not (tmp_path / "runs" / "demo").exists()


def test_jobs_2_trains_the_two_runs_side_by_side_with_their_logs(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    """The default of a full demo on 2+ cores: one process per run, each logging to its train.log."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["demo", "--quick", "--data", str(tiny_corpus_dir), "--out", str(out), "--epochs", "1", "--jobs", "2"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "started demo-tied" in result.output and "started demo-untied" in result.output
    for name in ("demo-tied", "demo-untied"):
        assert "epoch   1" in (out / name / "train.log").read_text() and read_metrics(out / name) is not None
    assert "| demo-tied | " in (out / "tying-demo.md").read_text()


def test_help_states_the_recipes_defaults() -> None:
    """The defaults --help names are the demo recipe's (they once drifted: 250 windows after a change to 180)."""
    from tying.recipes import load_recipe

    recipe = load_recipe("demo-tied")
    text = " ".join(runner.invoke(app, ["demo", "--help"], env=WIDE).output.split())
    assert f"Epochs. (default {recipe.train.epochs};" in text
    assert f"the whole training set. (default {recipe.train.max_batches};" in text
    assert f"(default {recipe.tables['model'].hidden_size}; --quick: 32)" in text  # type: ignore[attr-defined]


def test_missing_data_folder_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["demo", "--quick", "--data", str(tmp_path / "nope"), "--out", str(out)], env=WIDE)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "corpus folder" in result.output and "nope" in result.output and "train.txt" in result.output
    assert not out.exists()
