"""Running recipes and `tying compare`: records, skipped and resumed runs, seeds, reports rebuilt
identically, old records read with their numbers, bad records named, parallel jobs."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from typer.testing import CliRunner

import tying
from tying.cli.main import app
from tying.recipes import RecordError, expand_seeds, load_recipe, read_metrics, run_recipes, train_recipe
from tying.recipes.report import Row, columns, markdown, report_rows, unfinished, update_results_doc, write_report
from tying.data import DataNotFoundError, resolve_corpus
from tying.training import Interrupted, Metric, Task, TrainConfig, register_task
from tying.training.settings import changed_settings

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.embedding_size=16", "model.hidden_size=16", "model.num_layers=1", "train.bptt=10", "train.lr=5.0"]


def _recipes(corpus: Path, *names: str, epochs: int = 2) -> list:
    return [load_recipe(n, [f"data.corpus={corpus.as_posix()!r}", f"train.epochs={epochs}", *TINY]) for n in names]


@pytest.mark.slow
def test_train_recipe_lowers_validation_perplexity_and_records_everything(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    (recipe,) = _recipes(tiny_corpus_dir, "ptb-small-tied-pr")
    record = train_recipe(recipe, tmp_path / "run", command="tying train ...")
    first, second = (m["valid_ppl"] for m in record["history"])
    assert second < first
    assert read_metrics(tmp_path / "run") == json.loads(json.dumps(record))
    assert record["format"] == 2 and record["task"] == "lm" and record["unit"] == "tokens"
    assert record["recipe"]["loss"]["projection_penalty"] == 1 / 5200 and record["command"] == "tying train ..."
    V = record["data"]["vocab_size"]
    assert record["unique_parameters"] == V * 16 + 4 * 16 * (16 + 16 + 2) + (16 * 16 + 16) + V
    assert record["test"]["ppl"] > 1 and record["valid"]["ppl"] == second and "cores" in record["machine"]
    assert record["recipe"]["schedule_epochs"] == 13 and record["tokens_per_s"] > 0
    assert record["code"].startswith(f"tying {tying.__version__}")
    peaks = [m["peak_rss_mib"] for m in record["history"]]
    assert 10 < peaks[0] <= peaks[1] == record["peak_rss_mib"]  # a high-water mark: never falls


def test_tiny_lstm_and_transformer_recipes_run_end_to_end_on_builtin_data(tmp_path: Path) -> None:
    tiny = ["data.corpus=builtin", "train.epochs=1", "train.max_batches=3", "model.embedding_size=16", "train.bptt=8"]
    lstm = load_recipe("demo-tied", [*tiny, "model.hidden_size=16", "model.num_layers=1"])
    gpt = load_recipe("ptb-transformer-tied", [*tiny, "model.num_layers=1", "model.num_heads=2", "train.batch_size=4"])
    runs = expand_seeds([lstm, gpt])
    run_recipes(runs, tmp_path)
    rows, _ = write_report(runs, tmp_path, "tiny")
    assert [row.group for row in rows] == ["demo-tied", "ptb-transformer-tied"]
    for row in rows:
        assert row.first["data"]["vocab_size"] == 10_000 and row.first["test"]["ppl"] > 1
        assert row.first["history"][0]["train_tokens"] == 3 * 8 * (20 if row.group == "demo-tied" else 4)


def test_training_a_finished_run_again_rescores_it_without_training(tmp_path: Path) -> None:
    recipe = load_recipe("demo-tied", ["data.corpus=builtin", "train.epochs=1", "train.max_batches=3", "train.bptt=8",
                                       "model.embedding_size=16", "model.hidden_size=16", "model.num_layers=1"])
    first = train_recipe(recipe, tmp_path, name="run-a")
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.safetensors")}
    again = train_recipe(recipe, tmp_path, name="run-b")
    assert again["history"] == first["history"] and again["test"] == first["test"] and again["name"] == "run-b"
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.safetensors")} == files  # nothing trained or saved
    assert read_metrics(tmp_path) == json.loads(json.dumps(again))


@pytest.mark.slow
def test_compare_skips_finished_runs_and_rebuilds_the_report_identically(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out, doc = tmp_path / "cmp", tmp_path / "docs" / "RESULTS.md"
    sets = [f"--set={s}" for s in [f"data.corpus={tiny_corpus_dir.as_posix()!r}", "train.epochs=2", *TINY]]
    args = ["compare", "ptb-small-untied", "ptb-small-tied", *sets, "--out", str(out), "--doc", str(doc), "--name", "tiny"]
    doc.parent.mkdir()
    doc.write_text("# Results\n\nIntro kept.\n\n<!-- tying compare: tiny -->\nstale\n<!-- end tying compare: tiny -->\n\nOutro kept.\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "0 of 2 runs already finished" in result.output
    files = ["tiny.md", "tiny.csv", "tiny-valid-ppl.png", "tiny-test-vs-params.png"]
    first = {f: (out / f).read_bytes() for f in files}
    text = doc.read_text()
    assert text.startswith("# Results\n\nIntro kept.\n\n<!-- tying compare: tiny -->\n### ptb-small-untied, ptb-small-tied\n")
    assert text.endswith("<!-- end tying compare: tiny -->\n\nOutro kept.\n") and "stale" not in text
    assert "](../cmp/tiny-valid-ppl.png)" in text and "`tying train ptb-small-tied --set " in text

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 of 2 runs already finished" in again.output
    assert {f: (out / f).read_bytes() for f in files} == first and doc.read_text() == text
    report_only = runner.invoke(app, [*args, "--report-only"])
    assert report_only.exit_code == 0 and {f: (out / f).read_bytes() for f in files} == first

    rows = (out / "tiny.csv").read_text().splitlines()
    assert rows[0] == "run,epoch,lr,train_loss,train_ppl,valid_loss,valid_ppl,train_tokens,tokens_per_s,train_s,peak_rss_mib,wall_s" and len(rows) == 5
    table = (out / "tiny.md").read_text()
    # 2 of the recipe's 13 epochs: marked, and no gap to the paper's 13-epoch number.
    assert "| ptb-small-tied | " in table and "(paper 2.65M) | 2 of 13 (shortened) |" in table and "| 112.4 | n/a (shortened) |" in table


def test_seeds_expand_seed_by_seed_so_a_grid_cut_short_has_every_recipe() -> None:
    runs = expand_seeds([load_recipe("ptb-small-untied"), load_recipe("ptb-small-tied", ["train.seed=7"])], 3)
    assert [r.name for r in runs] == [
        "ptb-small-untied", "ptb-small-tied",
        "ptb-small-untied-seed1112", "ptb-small-tied-seed8",
        "ptb-small-untied-seed1113", "ptb-small-tied-seed9",
    ]  # fmt: skip
    assert [r.recipe.train.seed for r in runs] == [1111, 7, 1112, 8, 1113, 9]
    assert [r.group for r in runs] == ["ptb-small-untied", "ptb-small-tied"] * 3


@pytest.mark.slow
def test_seeds_report_mean_and_sd_beside_per_seed_values_and_resume(tiny_corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cmp"
    sets = [f"--set={s}" for s in [f"data.corpus={tiny_corpus_dir.as_posix()!r}", "train.epochs=1", "train.max_batches=5", *TINY]]
    args = ["compare", "ptb-small-tied", *sets, "--seeds", "3", "--out", str(out), "--name", "s"]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    records = [read_metrics(out / n) for n in ("ptb-small-tied", "ptb-small-tied-seed1112", "ptb-small-tied-seed1113")]
    assert [r["recipe"]["train"]["seed"] for r in records] == [1111, 1112, 1113]
    assert "--set train.seed=1112 --out " in records[1]["command"]
    tests = [r["test"]["ppl"] for r in records]
    assert len(set(tests)) == 3
    cell = f"{statistics.mean(tests):.2f} ± {statistics.stdev(tests):.2f}"
    md = (out / "s.md").read_text()
    assert "| ptb-small-tied (3 seeds) |" in md and cell in md and "Per seed" in md
    assert all(f"| {r['name']} | {r['recipe']['train']['seed']} | " in md for r in records)
    assert cell in result.output
    again = runner.invoke(app, args)
    assert "3 of 3 runs already finished" in again.output
    # The test-vs-parameters plot draws each seed beside the mean ± sd (a stalled seed stays visible).
    drawn: list[list[float]] = []
    scatter = Axes.scatter

    def recording_scatter(ax: Axes, x: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append(list(np.atleast_1d(y)))
        return scatter(ax, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", recording_scatter)
    assert runner.invoke(app, [*args, "--report-only"]).exit_code == 0
    assert sorted(tests) in [sorted(y) for y in drawn]


def test_committed_records_of_the_old_format_keep_their_numbers() -> None:
    old_records = [p for p in sorted((ROOT / "results" / "lm").glob("*/*/metrics.json")) if "format" not in json.loads(p.read_text())]
    assert len(old_records) == 10
    for path in old_records:
        old = json.loads(path.read_text())
        new = read_metrics(path.parent)
        assert new["format"] == 2
        assert new["valid"]["ppl"] == old["best_valid_ppl"] and new["test"] == {"ppl": old["test_ppl"], "loss": old["test_loss"]}
        assert new["tokens_per_s"] == old["tokens_per_s"] and new["wall_s"] == old["wall_s"] and new["history"] == old["history"]
        assert new["recipe"]["data"] == {"corpus": old["recipe"]["corpus"]} and new["data"] == old["corpus"]
        assert old["recipe"]["train"]["max_batches"] is None and new["recipe"]["train"]["max_batches"] == 0  # "no cap", as today
        epochs = {"ptb-medium": 40, "ptb-small": 13, "wikitext-2-small": 13}[path.parent.parent.name]
        assert new["recipe"]["schedule_epochs"] == epochs


def test_bad_metrics_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text('{"name": "x", "hist')
    with pytest.raises(RecordError, match=r"'.*run/metrics\.json' is not a valid metrics record \(.*\); delete it"):
        read_metrics(tmp_path / "run")
    (tmp_path / "run" / "metrics.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match=r"metrics\.json' is not a tying metrics record"):
        read_metrics(tmp_path / "run")
    (tmp_path / "run" / "metrics.json").write_text('{"name": "x", "history": [], "format": 2}')
    result = runner.invoke(app, ["compare", "ptb-small-tied", "--out", str(tmp_path), "--report-only"])
    assert result.exit_code == 1 and "no finished run" in result.output
    shutil.move(tmp_path / "run", tmp_path / "ptb-small-tied")
    (tmp_path / "ptb-small-tied" / "metrics.json").write_text("{bad")
    result = runner.invoke(app, ["compare", "ptb-small-tied", "--out", str(tmp_path), "--report-only"])
    assert result.exit_code == 1 and "metrics.json' is not a valid metrics record" in result.output
    assert "Traceback" not in result.output


def test_report_needs_finished_runs_and_unknown_corpora_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no finished run in .*; train them first"):
        write_report(expand_seeds([load_recipe("ptb-small-tied")]), tmp_path, "t")
    with pytest.raises(DataNotFoundError, match=r"corpus 'ptb' not found at '.*nowhere/ptb'; pass --data-root"):
        resolve_corpus("ptb", tmp_path / "nowhere")
    assert resolve_corpus("builtin") is None


def test_a_partial_report_names_the_runs_not_finished(tmp_path: Path) -> None:
    runs = expand_seeds([load_recipe("ptb-small-untied"), load_recipe("ptb-small-tied")], seeds=2)
    for run in runs[:3]:  # seed 1 of both, seed 2 of untied: ptb-small-tied-seed1112 is still training
        (tmp_path / run.name).mkdir()
        (tmp_path / run.name / "metrics.json").write_text(json.dumps(_record(run.name)))
    rows, _ = write_report(runs, tmp_path, "T", report="r")
    assert unfinished(runs, tmp_path) == ["ptb-small-tied-seed1112"]
    partial = "Partial: 1 run not finished yet and not in the tables: ptb-small-tied-seed1112."
    assert partial in (tmp_path / "r.md").read_text()
    doc = tmp_path / "R.md"
    update_results_doc(doc, "k", rows, tmp_path, "T", "r", unfinished(runs, tmp_path))
    assert f"### T\n\n{partial}\n\n| run |" in doc.read_text()
    assert "Partial" not in markdown(rows, "T", "r-")


def _record(name: str, task: str = "lm", **extra: Any) -> dict[str, Any]:
    return {
        "format": 2, "name": name, "task": task, "unit": "tokens", "total_parameters": 10, "unique_parameters": 5,
        "recipe": {"paper": {}, "description": "d", "train": {"epochs": 1, "seed": 1}, "schedule_epochs": 1},
        "history": [{"epoch": 1, "valid_ppl": 3.0}], "valid": {"ppl": 3.0, "loss": 1.1}, "test": {"ppl": 2.5, "loss": 0.9},
        "tokens_per_s": 100.0, "wall_s": 60.0, "command": f"tying train --config {name}", "finished": "now", "machine": "m", **extra,
    }  # fmt: skip


def test_update_results_doc_appends_a_new_section(tmp_path: Path) -> None:
    doc = tmp_path / "R.md"
    doc.write_text("# Results\n")
    update_results_doc(doc, "k", [Row("a", [_record("a")])], tmp_path / "out", "T")
    text = doc.read_text()
    assert text.startswith("# Results\n\n<!-- tying compare: k -->\n### T\n") and text.endswith("<!-- end tying compare: k -->\n")
    assert "| a | 10 | 5 | 1 | 3.00 | 2.50 | 100 | 1.0 min |" in text  # no paper value: no paper and gap columns
    assert "paper" not in text.split("Throughput is")[0]


def test_columns_come_from_the_tasks_metrics() -> None:
    @register_task
    class Scores(Task):  # a task whose metric is better when higher, counted in examples
        name = "test-scores"
        tables = {"train": TrainConfig}
        metrics = (Metric("acc", "accuracy", "higher", unit="%", fmt=".1f"),)
        unit = "examples"

        load_data = data_summary = build_model = train_batches = step = evaluate = None  # type: ignore[assignment]

    scores = _record("s", task="test-scores", unit="examples", valid={"acc": 91.0}, test={"acc": 90.5}, examples_per_s=12.0)
    scores["recipe"]["paper"] = {"test_acc": 92.0}
    rows = [Row("a", [_record("a")]), Row("s", [scores])]
    assert columns(rows) == [
        "run", "parameters", "unique parameters", "epochs",
        "best valid ppl", "test ppl",  # no recipe gives the paper's perplexity: no paper and gap columns
        "best valid accuracy", "test accuracy", "paper test accuracy", "gap",
        "throughput", "wall time",
    ]  # fmt: skip
    lm, acc = report_rows(rows)
    assert lm[4:10] == ["3.00", "2.50", "-", "-", "-", "-"] and lm[10] == "100 tokens/s"
    assert acc[4:10] == ["-", "-", "91.0%", "90.5%", "92", "-1.5"] and acc[10] == "12 examples/s"


def test_peak_memory_is_a_column_only_when_every_run_recorded_it() -> None:
    a, b = _record("a"), _record("b")
    a["peak_rss_mib"], b["peak_rss_mib"] = 300.0, 512.4
    rows = [Row("a", [a]), Row("b", [b])]
    assert columns(rows)[-3:] == ["tokens/s", "peak memory", "wall time"]
    assert [r[-2] for r in report_rows(rows)] == ["300 MiB", "512 MiB"]
    del b["peak_rss_mib"]  # a record written before tying measured memory: no column for anyone
    assert "peak memory" not in columns(rows) and len(report_rows(rows)[0]) == len(columns(rows))


def test_the_report_compares_gaps_and_ranking_with_the_paper(tmp_path: Path) -> None:
    def row(name: str, tests: list[float], paper: dict[str, Any]) -> Row:
        records = []
        for seed, test in enumerate(tests):
            record = _record(f"{name}-seed{seed}", test={"ppl": test, "loss": 1.0})
            record["recipe"]["paper"] = paper
            records.append(record)
        return Row(name, records)

    rows = [
        row("untied", [112.0, 113.0], {"test_ppl": 114.5, "tolerance": 3}),  # mean 112.5: -2.0
        row("tied", [108.5, 109.5], {"test_ppl": 112.4, "tolerance": 3}),  # mean 109.0: -3.4
        row("pr", [110.0], {"test_ppl": 111.7, "tolerance": 3}),  # -1.7
        row("plain", [50.0], {}),  # no paper value: in neither sentence
    ]
    text = markdown(rows, "T", "x-")
    assert (
        "Against the paper's test perplexity: within tolerance untied (-2.0, tolerance ±3), pr (-1.7, tolerance ±3); "
        "outside tied (-3.4, tolerance ±3)."
    ) in text
    assert "Ranked by test perplexity, best first: ours tied < pr < untied; the paper's pr < tied < untied (a different order)." in text
    rows[2] = row("pr", [109.5], {"test_ppl": 113.0})  # ours 109.5 > tied's 109.0, paper 113 > 112.4: same order; no tolerance
    text = markdown(rows, "T", "x-")
    assert "within tolerance untied (-2.0, tolerance ±3); outside tied (-3.4, tolerance ±3)." in text
    assert "ours tied < pr < untied; the paper's tied < pr < untied (the same order)." in text
    assert "Against the paper" not in markdown([rows[3]], "T", "x-") and "Ranked" not in markdown(rows[:1], "T", "x-")
    assert "validation perplexity; gap = ours - paper.\nAgainst" in markdown(rows[:1], "T", "x-")  # no empty sentence between
    assert "validation perplexity.\nThroughput is" in markdown([rows[3]], "T", "x-")  # no paper value, no gap


def test_a_paper_that_tests_the_last_epoch_is_compared_with_our_last_epoch() -> None:
    paper = {"test_ppl": 100.0, "tolerance": 3, "tested": "last"}

    def record(seed: int, best: float, last: float | None) -> dict[str, Any]:
        x = _record(f"r-seed{seed}", test={"ppl": best, "loss": 1.0}, **({} if last is None else {"test_last": {"ppl": last, "loss": 1.0}}))
        x["recipe"]["paper"], x["recipe"]["train"]["seed"] = paper, seed
        return x

    rows = [Row("r", [record(1, 98.0, 101.0), record(2, 99.0, 103.0)]), Row("plain", [_record("plain")])]
    assert columns(rows)[4:9] == ["best valid ppl", "test ppl", "last-epoch test ppl", "paper test ppl", "gap"]
    r, plain = report_rows(rows)
    assert r[5:9] == ["98.50 ± 0.71", "102.00 ± 1.41", "100", "+2.0"]  # the gap of the last epoch's mean, not the best's (-1.5)
    assert plain[5:9] == ["2.50", "-", "-", "-"]  # a record without test_last (written before tying kept it)
    text = markdown(rows, "T", "x-")
    assert "which is what the paper tests for r: their gap and the comparisons below use it." in text
    assert "within tolerance r (+2.0, tolerance ±3)" in text
    assert "| r-seed1 | 1 | 3.00 | 98.00 | 101.00 |" in text  # per seed: best valid, test, last-epoch test
    rows[0].records[1] = record(2, 99.0, None)  # recorded before test_last existed: no gap from one seed of two
    r, _ = report_rows(rows)
    assert r[6] == "-" and r[8] == "-" and "Against the paper" not in markdown(rows, "T", "x-")


def test_a_run_interrupted_on_its_own_stops_new_launches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exits_130 = tmp_path / "python"  # stands in for the interpreter: every run "saves a point and exits 130"
    exits_130.write_text("#!/bin/sh\nexit 130\n")
    exits_130.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(exits_130))
    runs = expand_seeds([load_recipe("ptb-small-tied")], seeds=3)
    with pytest.raises(Interrupted, match=r"runs 'ptb-small-tied', 'ptb-small-tied-seed1112' interrupted and saved resumable points"):
        run_recipes(runs, tmp_path / "out", jobs=2)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ptb-small-tied", "ptb-small-tied-seed1112"]  # the third never started


@pytest.mark.slow
def test_parallel_jobs_run_in_subprocesses_with_logs(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    sets = [f"--set={s}" for s in [f"data.corpus={tiny_corpus_dir.as_posix()!r}", "train.epochs=1", *TINY]]
    result = runner.invoke(app, ["compare", "ptb-small-untied", "ptb-small-tied", *sets, "--seeds", "2", "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    for name in ("ptb-small-untied", "ptb-small-tied", "ptb-small-untied-seed1112", "ptb-small-tied-seed1112"):
        record = read_metrics(out / name)
        recipe = name.removesuffix("-seed1112")
        assert record["name"] == name  # a second seed's record carries its run's name, as with --jobs 1
        assert record["command"].startswith(f"tying train {recipe} --set ") and "--threads 1" in record["command"]
        assert ("--name" in record["command"]) == (name != recipe)
        log = (out / name / "train.log").read_text()
        assert f"{name}: " in log and re.search(r"epoch 1: batch (\d+)/\1 \| loss", log)  # progress lines in the log file
    listing = runner.invoke(app, ["lm", "list"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "ptb-small-tied-pr" in listing.output and "wikitext-2" in listing.output


def test_compare_refuses_a_stored_run_of_other_settings_with_the_words_train_uses(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    base = ["compare", "digits-ae-tied", "--set", "train.epochs=1", "--out", str(out)]
    assert runner.invoke(app, [*base, "--set", "train.lr=0.01"]).exit_code == 0
    report = (out / "cmp.md").read_bytes()
    refusal = (
        f"error: {str(out)!r} holds 1 run trained with other settings than requested: digits-ae-tied "
        "(train.lr: stored 0.01, requested 0.001); use another output folder, or delete its folder to train it again\n"
    )
    result = runner.invoke(app, [*base, "--set", "train.lr=0.001"])
    assert result.exit_code == 1 and result.stderr == refusal
    assert (out / "cmp.md").read_bytes() == report  # not reported as the lr-0.001 run
    trained = runner.invoke(app, ["train", "digits-ae-tied", "--set", "train.epochs=1", "--set", "train.lr=0.001", "--out", str(out / "digits-ae-tied")])
    assert trained.exit_code == 1 and "(train.lr: stored 0.01, requested 0.001); only train.epochs may change" in trained.stderr
    only = runner.invoke(app, [*base, "--set", "train.lr=0.001", "--report-only"])
    assert only.exit_code == 0
    assert only.stderr.startswith("warning: run digits-ae-tied (train.lr: stored 0.01, requested 0.001) was trained with other settings")
    more = runner.invoke(app, [*base[:-4], "--set", "train.epochs=2", "--set", "train.lr=0.01", "--out", str(out)])
    assert more.exit_code == 0 and len(read_metrics(out / "digits-ae-tied")["history"]) == 2  # more epochs: resumed, not refused
    (out / "digits-ae-tied" / "metrics.json").unlink()  # an unfinished run: its training state is compared
    assert runner.invoke(app, [*base, "--set", "train.lr=0.001"]).stderr == refusal


def test_changed_settings_ignore_epochs_and_keys_a_run_predates_at_their_defaults() -> None:
    tables = load_recipe("digits-ae-tied", ["train.lr=0.001"]).tables
    stored = {name: table.model_dump(mode="json") for name, table in tables.items()}
    assert changed_settings(stored, tables) == []
    stored["train"] = {**stored["train"], "epochs": 1, "lr": 0.01}
    del stored["train"]["warmup_steps"]  # added after the run, at its default
    assert changed_settings(stored, tables) == ["train.lr: stored 0.01, requested 0.001"]
    assert changed_settings(stored, load_recipe("digits-ae-tied", ["train.lr=0.01", "train.warmup_steps=3"]).tables) == [
        "train.warmup_steps: stored (not set), requested 3"
    ]


def test_a_key_a_run_predates_counts_as_what_it_meant_then_not_as_todays_default() -> None:
    # Records written before train.optimizer existed trained with SGD, tying 0.1's default; today's
    # default is AdamW, so "missing" must not read as "adamw" (the committed PTB runs are such records).
    tables = load_recipe("ptb-small-tied").tables
    stored = {name: table.model_dump(mode="json") for name, table in tables.items()}
    del stored["train"]["optimizer"]
    assert tables["train"].optimizer == "sgd" and changed_settings(stored, tables) == []
    adamw = load_recipe("ptb-small-tied", ['train.optimizer="adamw"']).tables
    assert changed_settings(stored, adamw) == ['train.optimizer: stored (not set), requested "adamw"']


def test_reports_give_old_records_commands_in_todays_spelling_and_singular_counts() -> None:
    old = "tying train --config ptb-small-tied train.seed=1112 --out results/x --name r --threads 1"
    record = _record("r", command=old)
    record["recipe"]["train"]["max_batches"] = 1
    text = markdown([Row("r", [record])], "T", "x-")
    assert "`tying train ptb-small-tied --set train.seed=1112 --out results/x --name r --threads 1` — 1 epoch, 1 batch each, " in text
    assert report_rows([Row("r", [record])])[0][3] == "1, 1 batch each"
