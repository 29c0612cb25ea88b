"""`tying demo --quick` end to end on a tiny corpus: table, plot, metrics JSON, errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tying.cli.main import app

runner = CliRunner()


def test_quick_demo_writes_table_plot_and_metrics(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["demo", "--quick", "--data", str(tiny_corpus_dir), "--out", str(out), "--epochs", "2"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    text = result.output
    for label in ("tied vs untied", "parameters (with duplicates)", "unique parameters", "test perplexity", "tokens/s", "wall time"):
        assert label in text
    assert (out / "tying-demo.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "tying-demo.json").read_text())
    tied, untied = report["runs"]
    assert (tied["name"], untied["name"]) == ("tied", "untied")
    # --quick: 1 layer of 32 units; V from the corpus. Tying removes exactly one V x 32 matrix.
    V, h = report["corpus"]["vocab_size"], 32
    lstm = 4 * h * (h + h + 2)
    assert untied["unique_parameters"] == 2 * V * h + lstm + V
    assert tied["unique_parameters"] == V * h + lstm + V
    assert tied["total_parameters"] == untied["total_parameters"] == untied["unique_parameters"]
    assert len(tied["history"]) == len(untied["history"]) == 2
    assert all(r["test_ppl"] > 1 for r in report["runs"])
    assert (out / "tied" / "best.safetensors").is_file() and (out / "untied" / "train_state.safetensors").is_file()


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--quick", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "corpus folder" in result.output and "nope" in result.output and "train.txt" in result.output


def test_resume_extends_both_runs_and_writes_markdown(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["demo", "--quick", "--data", str(tiny_corpus_dir), "--out", str(out)]
    assert runner.invoke(app, [*args, "--epochs", "1"]).exit_code == 0
    first = json.loads((out / "tying-demo.json").read_text())
    result = runner.invoke(app, [*args, "--epochs", "2", "--resume"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output
    report = json.loads((out / "tying-demo.json").read_text())
    for before, after in zip(first["runs"], report["runs"], strict=True):
        assert [m["epoch"] for m in after["history"]] == [1, 2]
        assert after["history"][0]["train_loss"] == before["history"][0]["train_loss"]
    md = (out / "tying-demo.md").read_text()
    assert "| parameters (with duplicates) |" in md and "Machine:" in md
    assert f"Command: `tying demo --data {tiny_corpus_dir} --out {out} --epochs 2 --quick --resume`" in md
