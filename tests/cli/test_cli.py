"""The command line as a new user meets it: --version, Ctrl-C, output piped to a file, expected
errors, nothing written before validation, missing extras. Commands run in subprocesses where
the behaviour depends on the process (signals, a pipe instead of a terminal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tying
from tying.cli.main import app
from tying.training import read_train_state

runner = CliRunner()
SRC = Path(tying.__file__).resolve().parents[1]
TINY = ["model.embedding_size=16", "model.hidden_size=16", "model.num_layers=1", "train.bptt=5"]


def _tying(*args: str, cwd: Path | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env.pop("COLUMNS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tying.cli.main", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, **kw
    )


def _train_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "ptb-small-tied", *(f"--set={s}" for s in (f"data.corpus={str(corpus)!r}", *TINY, *extra)), "--out", str(out)]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"tying {tying.__version__}\n"


def test_ctrl_c_saves_a_resumable_point_and_exits_130_saying_how_to_resume(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _tying(*_train_args(tiny_corpus_dir, out, "train.epochs=100000"), "--progress-every", "0")
    try:
        assert proc.stdout is not None
        # A line per batch: signal once epoch 2 is 5 batches in, so the point saved is inside an
        # epoch, not the checkpoint between two, however loaded the machine is.
        for line in proc.stdout:
            if line.startswith("epoch 2: batch 5/"):
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "saved a resumable point in" in stderr and "; resume with: tying train ptb-small-tied --set " in stderr
    state = read_train_state(out / "train_state.safetensors").state
    assert state.step > 0 and (out / state.model_file).is_file()  # a point inside an epoch
    # Resuming with only the epoch count changed finishes the interrupted epoch from that batch.
    resumed = _tying(*_train_args(tiny_corpus_dir, out, f"train.epochs={state.epoch + 1}"))
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert f"after batch {state.step} of epoch {state.epoch + 1}" in " ".join(stdout.split())
    assert (out / "metrics.json").is_file()


def test_piped_output_has_progress_lines_and_whole_tables(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    proc = _tying(*_train_args(tiny_corpus_dir, tmp_path / "run", "train.epochs=1"), "--progress-every", "0")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines if line.startswith("epoch 1: batch ")][:2] == ["epoch 1: batch 1/42", "epoch 1: batch 2/42"]
    header = next(line for line in lines if "best valid ppl" in line)
    assert len(header) > 80 and "wall time" in header and "test ppl" in header  # not cut at 80 columns


def test_expected_errors_are_one_line_and_a_nonzero_exit(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _tying(*_train_args(tiny_corpus_dir, out, "train.epochs=1")).wait(timeout=120) == 0
    cases = [
        (_train_args(tiny_corpus_dir, out, "train.epochs=1", "train.bptt=7"), "cannot resume from"),  # resume, changed settings
        (_train_args(tiny_corpus_dir, tmp_path / "b", "model.tie=False"), "model.tie = 'False'"),  # recipe value
        (["train", "nope"], "no recipe 'nope'"),  # recipe name
        (["train", "ptb-small-tied", "--data-root", str(tmp_path / "nowhere")], "corpus 'ptb' not found"),  # data
        (["compare", "ptb-small-tied", "--out", str(tmp_path / "none"), "--report-only"], "no finished run"),
    ]
    for args, message in cases:
        proc = _tying(*args, cwd=tmp_path)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, (args, stdout, stderr)
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: ") and message in stderr, stderr
        assert "Traceback" not in stdout + stderr
    (out / "train_state.safetensors").write_bytes(b"garbage")  # a damaged checkpoint
    proc = _tying(*_train_args(tiny_corpus_dir, out, "train.epochs=2"))
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 1 and stderr.startswith("error: cannot read training state") and len(stderr.strip().splitlines()) == 1


def test_a_failed_start_creates_no_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (
        ["lm", "train", "ptb-small-tied", "--data-root", str(tmp_path / "nowhere")],
        ["train", "ptb-small-tied", "--set", "train.bptt=0"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("module", "extra", "args"), [("typer", "cli", ["--version"]), ("matplotlib", "experiments", ["demo", "--quick"])])
def test_a_missing_extra_is_named_in_one_line(module: str, extra: str, args: list[str], tmp_path: Path) -> None:
    code = f"import sys; sys.modules[{module!r}] = None; sys.argv = ['tying', *{args!r}]; from tying.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"error: this tying command needs the '{extra}' extra (missing module '{module}'); from a checkout: pip install -e \".[{extra}]\"\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_library_core_works_without_the_extras(tmp_path: Path) -> None:
    hidden = ("typer", "rich", "click", "matplotlib", "pydantic", "tomli")
    code = (
        f"import sys; [sys.modules.__setitem__(m, None) for m in {hidden!r}]\n"
        "import torch, tying, tying.models, tying.data\n"
        "m = tying.models.LSTMLanguageModel(tying.models.LSTMConfig(20, 8, 8, 1, tie=True))\n"
        "tying.save(m, 'm.safetensors'); tying.load(m, 'm.safetensors'); assert m.decoder.weight is m.encoder.weight\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _unwritable(tmp_path: Path) -> Path:
    """A folder nothing can be created in: read-only by its mode, or (for root, whom modes do not
    stop) a read-only system folder; skips where neither holds."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys"), Path("/proc/1")):
        try:
            (candidate / ".probe").mkdir()
        except OSError:
            return candidate
        (candidate / ".probe").rmdir()
    pytest.skip("no unwritable folder here")


def test_output_paths_are_checked_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    for name in ("rep.md", "plot-valid-ppl.png", "tying-demo.csv"):  # folders where a report, a plot, the demo's CSV go
        (tmp_path / "cmp" / name).mkdir(parents=True)
    ro = _unwritable(tmp_path)
    quick = ["--set", "train.epochs=1", "--set", "train.max_batches=1"]
    cases = [
        (["train", "demo-tied", "--out", "file"], "cannot write --out 'file': it is a file, not a folder"),
        (["train", "demo-tied", "--out", "file/run"], "cannot write --out 'file/run': 'file' is a file, not a folder"),
        (["train", "demo-tied", "--out", str(ro / "run")], f"cannot write --out {str(ro / 'run')!r}: {str(ro)!r} is not writable ("),
        (["compare", "demo-tied", *quick, "--out", "file"], "cannot write --out 'file': it is a file, not a folder"),
        (["compare", "demo-tied", *quick, "--out", "cmp", "--name", "rep"], "cannot write report 'cmp/rep.md': it is a folder, not a file"),
        (["compare", "demo-tied", *quick, "--out", "cmp", "--name", "rep", "--report-only"], "cannot write report 'cmp/rep.md'"),
        (["compare", "demo-tied", *quick, "--out", "cmp", "--name", "plot"], "cannot write plot 'cmp/plot-valid-ppl.png': it is a folder, not a file"),
        (["compare", "demo-tied", *quick, "--out", "cmp2", "--doc", "cmp"], "cannot write --doc 'cmp': it is a folder, not a file"),
        (["compare", "demo-tied", *quick, "--out", "cmp2", "--doc", str(ro / "R.md")], f"cannot write --doc {str(ro / 'R.md')!r}: {str(ro)!r} is not writable"),
        (["demo", "--quick", "--out", "file"], "cannot write --out 'file': it is a file, not a folder"),
        (["demo", "--quick", "--out", "cmp"], "cannot write report 'cmp/tying-demo.csv': it is a folder, not a file"),
    ]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1, (args, result.stderr)
        assert "nothing was written" in result.stderr and "Traceback" not in result.output
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
