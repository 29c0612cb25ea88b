"""The LM recipe and `tying compare` on a tiny corpus: training lowers validation perplexity,
finished runs are skipped, reports are rebuilt identically from stored metrics, and the results
document keeps everything outside its section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tying.cli.main import app
from tying.recipes import RecipeError, load_recipe, read_metrics, resolve_corpus, train_lm
from tying.recipes.compare import update_results_doc, write_report

runner = CliRunner()
TINY = ["model.embedding_size=16", "model.hidden_size=16", "model.num_layers=1", "train.bptt=10", "train.lr=5.0"]


def _recipes(corpus: Path, *names: str, epochs: int = 2) -> list:
    return [load_recipe(n, [f"corpus={corpus.as_posix()!r}", f"train.epochs={epochs}", *TINY]) for n in names]


@pytest.mark.slow
def test_two_epochs_lower_validation_perplexity_and_record_everything(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    (recipe,) = _recipes(tiny_corpus_dir, "ptb-small-tied-pr")
    record = train_lm(recipe, tmp_path / "run", command="tying lm train ...")
    first, second = (m["valid_ppl"] for m in record["history"])
    assert second < first
    assert read_metrics(tmp_path / "run") == json.loads(json.dumps(record))
    assert record["recipe"]["loss"]["projection_penalty"] == 1 / 5200 and record["command"] == "tying lm train ..."
    V = record["corpus"]["vocab_size"]
    assert record["unique_parameters"] == V * 16 + 4 * 16 * (16 + 16 + 2) + (16 * 16 + 16) + V
    assert record["test_ppl"] > 1 and "cores" in record["machine"]


@pytest.mark.slow
def test_compare_skips_finished_runs_and_rebuilds_the_report_identically(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out, doc = tmp_path / "cmp", tmp_path / "docs" / "RESULTS.md"
    sets = [f"--set={s}" for s in [f"corpus={tiny_corpus_dir.as_posix()!r}", "train.epochs=2", *TINY]]
    args = ["compare", "ptb-small-untied", "ptb-small-tied", *sets, "--out", str(out), "--doc", str(doc), "--name", "tiny"]
    doc.parent.mkdir()
    doc.write_text("# Results\n\nIntro kept.\n\n<!-- tying compare: tiny -->\nstale\n<!-- end tying compare: tiny -->\n\nOutro kept.\n")
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "0 of 2 run(s) already finished" in result.output
    files = ["tiny.md", "tiny.csv", "tiny-valid-ppl.png", "tiny-test-vs-params.png"]
    first = {f: (out / f).read_bytes() for f in files}
    text = doc.read_text()
    assert text.startswith("# Results\n\nIntro kept.\n\n<!-- tying compare: tiny -->\n### ptb-small-untied, ptb-small-tied\n")
    assert text.endswith("<!-- end tying compare: tiny -->\n\nOutro kept.\n") and "stale" not in text
    assert "](../cmp/tiny-valid-ppl.png)" in text and "`tying lm train --config ptb-small-tied" in text

    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "2 of 2 run(s) already finished" in again.output
    assert {f: (out / f).read_bytes() for f in files} == first and doc.read_text() == text
    report_only = runner.invoke(app, [*args, "--report-only"], env={"COLUMNS": "200"})
    assert report_only.exit_code == 0 and {f: (out / f).read_bytes() for f in files} == first

    rows = (out / "tiny.csv").read_text().splitlines()
    assert rows[0] == "run,epoch,lr,train_ppl,valid_ppl,tokens_per_s,train_s,wall_s" and len(rows) == 5
    table = (out / "tiny.md").read_text()
    assert "| ptb-small-tied |" in table and "(paper 2.65M)" in table and "| 112.4 |" in table


def test_report_needs_finished_runs_and_unknown_corpora_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no finished run in .*; train them first"):
        write_report([load_recipe("ptb-small-tied")], tmp_path, "t")
    with pytest.raises(RecipeError, match=r"corpus 'ptb' not found at '.*nowhere/ptb'; pass --data-root"):
        resolve_corpus("ptb", tmp_path / "nowhere")
    assert resolve_corpus("builtin") is None
    result = runner.invoke(app, ["lm", "train", "--config", "ptb-small-tied", "--data-root", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "corpus 'ptb' not found" in result.output


def test_update_results_doc_appends_a_new_section(tmp_path: Path) -> None:
    doc = tmp_path / "R.md"
    doc.write_text("# Results\n")
    record = {
        "name": "a", "recipe": {"paper": {}, "description": "d"}, "total_parameters": 10, "unique_parameters": 5,
        "history": [{"epoch": 1}], "best_valid_ppl": 3.0, "test_ppl": 2.5, "tokens_per_s": 100.0, "wall_s": 60.0,
        "command": "tying lm train --config a", "finished": "now", "machine": "m",
    }  # fmt: skip
    update_results_doc(doc, "k", [record], tmp_path / "out", "T")
    text = doc.read_text()
    assert text.startswith("# Results\n\n<!-- tying compare: k -->\n### T\n") and text.endswith("<!-- end tying compare: k -->\n")
    assert "| a | 10 | 5 | 1 | 3.00 | 2.50 | - | - | 100 | 1.0 min |" in text


@pytest.mark.slow
def test_parallel_jobs_run_in_subprocesses_with_logs(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    sets = [f"--set={s}" for s in [f"corpus={tiny_corpus_dir.as_posix()!r}", "train.epochs=1", *TINY]]
    result = runner.invoke(app, ["compare", "ptb-small-untied", "ptb-small-tied", *sets, "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    for name in ("ptb-small-untied", "ptb-small-tied"):
        record = read_metrics(out / name)
        assert record["command"].startswith(f"tying lm train --config {name} ") and "--threads 1" in record["command"]
        assert f"{name}: " in (out / name / "train.log").read_text()
    listing = runner.invoke(app, ["lm", "list"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "ptb-small-tied-pr" in listing.output and "wikitext-2" in listing.output
