"""The training engine on the LM task and on a task of its own: learning, determinism, exact
resume (after a crash, an interrupt or a kill), schedules, checkpoints and progress output."""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

import tying
from tying.errors import CheckpointError
from tying.tasks.lm import BPTTBatches, LMData, LMTask, LMTrain, LossConfig, LSTMModel, batchify, detach_state
from tying.training import Interrupted, StepOutput, Trainer, TrainResult, next_lr, read_train_state, step_lr
from tying.training.trainer import BEST_FILE, STATE_FILE

# The language-model schedule (pytorch/examples word_language_model): SGD, clipped, lr / 4 on a plateau.
TRAIN = {"epochs": 2, "batch_size": 8, "eval_batch_size": 4, "bptt": 10, "optimizer": "sgd", "lr": 5.0, "clip": 0.25, "lr_schedule": "plateau", "seed": 7}


def _task(corpus: Path, model: dict[str, Any] | None = None, **train: Any) -> LMTask:
    tables = {
        "data": LMData(corpus=str(corpus)),
        "model": LSTMModel(**{"embedding_size": 24, "hidden_size": 24, "num_layers": 1, "dropout": 0.1, "tie": True, **(model or {})}),
        "loss": LossConfig(),
        "train": LMTrain(**{**TRAIN, **train}),
    }
    return LMTask(tables)


def _fit(task: LMTask, folder: Path, resume: bool = False, **kw: Any) -> TrainResult:
    data = task.load_data(None)
    torch.manual_seed(0)
    return Trainer(task, task.build_model(data), data, folder, **kw).fit(resume=resume)


def _losses(result: TrainResult) -> list[tuple[float, float]]:
    return [(m["train_loss"], m["valid_loss"]) for m in result.history]


class _Recording(LMTask):
    """The LM task recording every step's loss and raising ``stop`` at step ``at``."""

    def __init__(self, task: LMTask, at: int | None = None, stop: type[BaseException] = RuntimeError) -> None:
        super().__init__(task.config)
        self.seen: list[float] = []
        self.at, self.stop = at, stop

    def step(self, model: Any, batch: Any, carry: Any) -> StepOutput:
        if self.at is not None and len(self.seen) + 1 == self.at:
            raise self.stop("crash")
        out = super().step(model, batch, carry)
        self.seen.append(out.loss.item())
        return out


def test_two_epochs_lower_validation_perplexity(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    task = _task(tiny_corpus_dir)
    result = _fit(task, tmp_path)
    V = len(task.load_data(None).corpus.dictionary)
    first, second = (m["valid_ppl"] for m in result.history)
    assert second < first < V
    assert result.best_epoch == 2 and result.valid["ppl"] == second
    assert result.test is not None and result.test["ppl"] < V / 2
    json.dumps(result.to_dict())  # history is JSON-serialisable
    m = result.history[0]
    n = task.load_data(None).corpus.train.numel()
    assert m["train_tokens"] == n // 8 * 8 - 8  # every row but the last is an input
    assert m["tokens_per_s"] > 0 and m["wall_s"] >= m["train_s"] > 0 and m["lr"] == 5.0
    assert set(m) == {"epoch", "lr", "train_loss", "train_ppl", "valid_ppl", "valid_loss", "train_tokens", "tokens_per_s", "train_s", "peak_rss_mib", "wall_s"}
    assert m["peak_rss_mib"] > 10  # the process holds the interpreter and torch at least


class _BestFirst(LMTask):
    """The LM task whose validation calls epoch 1 the best (every later epoch scores worse)."""

    def __init__(self, task: LMTask) -> None:
        super().__init__(task.config)
        self.validations = 0

    def evaluate(self, model: Any, data: Any, split: str, *, epoch: int) -> dict[str, float] | None:
        if split != "valid":
            return super().evaluate(model, data, split, epoch=epoch)
        self.validations += 1
        return {"loss": float(self.validations), "ppl": math.exp(self.validations)}


def test_test_scores_the_best_epochs_model_and_test_last_the_last_ones(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    last_best = _fit(_task(tiny_corpus_dir), tmp_path / "plain")  # validation improves: epoch 2 is the best
    assert last_best.best_epoch == last_best.test_epoch == 2 and last_best.test_last == last_best.test
    first_best = _fit(_BestFirst(_task(tiny_corpus_dir)), tmp_path / "best-first")
    one_epoch = _fit(_task(tiny_corpus_dir, epochs=1), tmp_path / "one")
    assert first_best.best_epoch == first_best.test_epoch == 1
    assert first_best.test == one_epoch.test  # the model of epoch 1, reloaded from best.safetensors
    assert first_best.test_last == last_best.test != first_best.test  # the model of epoch 2
    assert first_best.to_dict()["test_last"] == first_best.test_last


def test_same_seed_same_losses_other_seed_other_losses(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    a = _fit(_task(tiny_corpus_dir), tmp_path / "a")
    b = _fit(_task(tiny_corpus_dir), tmp_path / "b")
    c = _fit(_task(tiny_corpus_dir, seed=8), tmp_path / "c")  # other dropout masks
    assert _losses(a) == _losses(b) and a.test == b.test
    assert _losses(a) != _losses(c)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_resume_after_a_crash_continues_exactly(tiny_corpus_dir: Path, tmp_path: Path, momentum: float) -> None:
    settings = {"epochs": 3, "momentum": momentum, "lr": 1.0 if momentum else 5.0}
    full = _fit(_task(tiny_corpus_dir, **settings), tmp_path / "full")
    crashing = _Recording(_task(tiny_corpus_dir, **settings), at=80)  # in epoch 2 (53 windows per epoch)
    with pytest.raises(RuntimeError, match="crash"):
        _fit(crashing, tmp_path / "run")
    assert read_train_state(tmp_path / "run" / STATE_FILE).state.epoch == 1
    torch.manual_seed(123)  # the resumed process starts with other RNG state
    resumed = _fit(_task(tiny_corpus_dir, **settings), tmp_path / "run", resume=True)
    assert _losses(resumed) == _losses(full) and resumed.test == full.test


def test_interrupt_saves_a_point_inside_the_epoch_and_resume_is_exact(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    full = _Recording(_task(tiny_corpus_dir, epochs=2, momentum=0.5, lr=1.0))
    full_result = _fit(full, tmp_path / "full")

    class Stopping(_Recording):
        def step(self, model: Any, batch: Any, carry: Any) -> StepOutput:
            out = super().step(model, batch, carry)
            if len(self.seen) == 70:  # batch 17 of epoch 2: what the SIGINT handler does
                trainer.stop.requested = True
            return out

    task = Stopping(_task(tiny_corpus_dir, epochs=2, momentum=0.5, lr=1.0))
    data = task.load_data(None)
    torch.manual_seed(0)
    trainer = Trainer(task, task.build_model(data), data, tmp_path / "run")
    with pytest.raises(Interrupted, match=r"interrupted in epoch 2 after batch 17; saved a resumable point in '.*run'"):
        trainer.fit()
    saved = read_train_state(tmp_path / "run" / STATE_FILE).state
    assert (saved.epoch, saved.step, saved.partial["count"]) == (1, 17, 17 * 80)
    assert saved.model_file == "model-epoch002-step000017.safetensors" and saved.carry is not None
    resumed = _Recording(_task(tiny_corpus_dir, epochs=2, momentum=0.5, lr=1.0))
    torch.manual_seed(5)
    result = _fit(resumed, tmp_path / "run", resume=True)
    assert task.seen + resumed.seen == full.seen  # every step's loss, bit for bit
    assert _losses(result) == _losses(full_result) and result.test == full_result.test
    assert not (tmp_path / "run" / "model-epoch002-step000017.safetensors").exists()


def test_resume_extends_a_finished_run_and_checks_settings(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    three = _fit(_task(tiny_corpus_dir, epochs=3), tmp_path / "three")
    _fit(_task(tiny_corpus_dir), tmp_path / "run")
    extended = _fit(_task(tiny_corpus_dir, epochs=3), tmp_path / "run", resume=True)
    assert _losses(extended) == _losses(three)
    with pytest.raises(CheckpointError, match=r"train\.bptt: stored 10, requested 12\).*only train\.epochs may change"):
        _fit(_task(tiny_corpus_dir, bptt=12), tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match=r"model\.tie: stored true, requested false\)"):
        _fit(_task(tiny_corpus_dir, {"tie": False}), tmp_path / "run", resume=True)


def test_checkpoint_folder_holds_latest_best_and_state(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    task = _task(tiny_corpus_dir, epochs=3)
    _fit(task, folder)
    assert sorted(p.name for p in folder.iterdir()) == [BEST_FILE, "model-epoch003.safetensors", STATE_FILE]
    saved = read_train_state(folder / STATE_FILE)
    assert saved.state.epoch == 3 and len(saved.state.history) == 3
    assert saved.state.model_file == "model-epoch003.safetensors" and saved.config["train"]["bptt"] == 10
    assert "rng.cpu" in saved.rng
    model = task.build_model(task.load_data(None))
    tying.load(model, folder / "model-epoch003.safetensors")  # tie-aware model file
    assert model.decoder.weight is model.encoder.weight


def test_not_a_state_file_is_refused(tmp_path: Path) -> None:
    tying.save(torch.nn.Linear(2, 2), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"not a tying training-state file"):
        read_train_state(tmp_path / "model.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{junk")
    with pytest.raises(CheckpointError, match=r"cannot read training state .*junk\.safetensors"):
        read_train_state(tmp_path / "junk.safetensors")


def test_capped_epochs_continue_through_the_batches(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    seen: list[torch.Tensor] = []

    class Inputs(LMTask):
        def step(self, model: Any, batch: Any, carry: Any) -> StepOutput:
            seen.append(batch[0].clone())
            return super().step(model, batch, carry)

    task = Inputs(_task(tiny_corpus_dir, epochs=3, max_batches=20).config)
    result = _fit(task, tmp_path)
    windows = BPTTBatches(batchify(task.load_data(None).corpus.train, 8), 10)
    assert 40 < len(windows) < 60  # so the third epoch wraps round to the start
    expected = [windows[k % len(windows)][0] for k in range(60)]
    assert all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))
    assert [m["train_tokens"] for m in result.history] == [sum(x.numel() for x in expected[i : i + 20]) for i in (0, 20, 40)]


def test_lr_schedules() -> None:
    plateau = LMTrain(lr_schedule="plateau", lr_decay=4.0)
    assert next_lr(plateau, 20.0, epoch=1, improved=True) == 20.0
    assert next_lr(plateau, 20.0, epoch=1, improved=False) == 5.0
    step = LMTrain(lr_schedule="step", lr_decay=2.0, decay_start=4)  # Zaremba et al.'s small model
    assert [next_lr(step, 1.0, epoch=e, improved=True) for e in (3, 4, 5)] == [1.0, 0.5, 0.5]
    assert next_lr(LMTrain(lr_schedule="constant"), 3.0, epoch=9, improved=False) == 3.0


def test_first_epoch_lr_then_the_schedule_from_lr(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    config = LMTrain(lr=20.0, first_epoch_lr=10.0, lr_schedule="step", lr_decay=2.0, decay_start=5)
    lrs = [10.0]
    for epoch in range(1, 8):
        lrs.append(next_lr(config, lrs[-1], epoch=epoch, improved=True))
    assert lrs == [10.0, 20.0, 20.0, 20.0, 20.0, 10.0, 5.0, 2.5]
    assert next_lr(LMTrain(lr=20.0, first_epoch_lr=10.0, lr_schedule="step", decay_start=1, lr_decay=2.0), 10.0, epoch=1, improved=True) == 10.0
    with pytest.raises(ValueError, match="first_epoch_lr applies to the per-epoch schedules"):
        LMTrain(optimizer="adamw", lr=1e-3, lr_schedule="inverse_sqrt", warmup_steps=4, first_epoch_lr=1e-4)
    result = _fit(_task(tiny_corpus_dir, epochs=2, lr=5.0, first_epoch_lr=1.0, lr_schedule="constant"), tmp_path)
    assert [m["lr"] for m in result.history] == [1.0, 5.0]


def test_inverse_sqrt_schedule_warms_up_then_decays() -> None:
    config = LMTrain(optimizer="adamw", lr=1e-3, lr_schedule="inverse_sqrt", warmup_steps=400)
    assert [step_lr(config, s) for s in (1, 200, 400)] == [1e-3 / 400, 1e-3 / 2, 1e-3]
    assert step_lr(config, 1600) == pytest.approx(1e-3 / 2)  # sqrt(400 / 1600)
    assert next_lr(config, 1e-3, epoch=3, improved=False) == 1e-3  # nothing per epoch
    assert step_lr(LMTrain(), 5) is None
    with pytest.raises(ValueError, match=r"inverse_sqrt' needs warmup_steps >= 1"):
        LMTrain(lr_schedule="inverse_sqrt")


def test_linear_schedule_falls_to_the_floor_over_the_run(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    config = LMTrain(optimizer="sgd", lr=0.025, lr_schedule="linear")
    assert [step_lr(config, s, 100) for s in (1, 51, 100)] == pytest.approx([0.025, 0.0125, 0.00025])
    assert step_lr(config, 100, 100) > step_lr(config, 101, 100) == pytest.approx(0.025 * 1e-4)  # word2vec's floor
    assert next_lr(config, 0.025, epoch=1, improved=False) == 0.025  # nothing per epoch
    with pytest.raises(ValueError, match=r"lr_schedule='linear' needs the run's total number of steps, got None"):
        step_lr(config, 1)
    with pytest.raises(ValueError, match=r"first_epoch_lr applies to the per-epoch schedules; lr_schedule='linear' starts at lr"):
        LMTrain(lr_schedule="linear", first_epoch_lr=0.1)
    result = _fit(_task(tiny_corpus_dir, epochs=2, optimizer="sgd", lr=1.0, clip=0.25, lr_schedule="linear", max_batches=10), tmp_path)
    assert [m["lr"] for m in result.history] == pytest.approx([1 - 9 / 20, 1 - 19 / 20])  # each epoch's last step


def test_inverse_sqrt_in_the_loop_resumes_exactly(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    settings = {"epochs": 3, "optimizer": "adamw", "lr": 0.01, "clip": 0.0, "lr_schedule": "inverse_sqrt", "warmup_steps": 30, "max_batches": 20}
    full = _fit(_task(tiny_corpus_dir, **settings), tmp_path / "full")
    config = LMTrain(**{**TRAIN, **settings})
    assert [m["lr"] for m in full.history] == [step_lr(config, 20 * e) for e in (1, 2, 3)]  # the epoch's last step
    crashing = _Recording(_task(tiny_corpus_dir, **settings), at=45)  # in epoch 3
    with pytest.raises(RuntimeError, match="crash"):
        _fit(crashing, tmp_path / "run")
    resumed = _fit(_task(tiny_corpus_dir, **settings), tmp_path / "run", resume=True)
    assert _losses(resumed) == _losses(full) and resumed.test == full.test


def test_plateau_divides_lr_in_the_loop(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    # lr 100 overshoots, so validation stops improving and the schedule divides the rate.
    result = _fit(_task(tiny_corpus_dir, epochs=4, lr=100.0, clip=0.0), tmp_path)
    lrs = [m["lr"] for m in result.history]
    improved = [m["valid_loss"] <= min(h["valid_loss"] for h in result.history[: i + 1]) for i, m in enumerate(result.history)]
    assert not all(improved)
    for i in range(1, len(lrs)):
        assert lrs[i] == (lrs[i - 1] if improved[i - 1] else lrs[i - 1] / 4)


def test_detach_state_cuts_history() -> None:
    h = torch.ones(2, requires_grad=True) * 2
    out = detach_state((h, (h, None)))
    assert out[0].grad_fn is None and out[1][0].grad_fn is None and out[1][1] is None


def test_console_gets_epoch_lines_and_progress_lines_when_not_a_terminal(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    console = Console(record=True, width=200, force_terminal=False)
    _fit(_task(tiny_corpus_dir), tmp_path, console=console, progress_every=0.0)
    text = console.export_text()
    assert "epoch   1 | lr 5 | train loss" in text and "valid ppl" in text and "epoch   2" in text and "test ppl" in text
    progress = [line for line in text.splitlines() if line.startswith("epoch 1: batch ")]
    assert len(progress) == 53 and progress[-1].startswith("epoch 1: batch 53/53 | loss ") and "tokens/s" in progress[-1]
    quiet = Console(record=True, width=200, force_terminal=False)
    _fit(_task(tiny_corpus_dir), tmp_path / "b", console=quiet, progress_every=3600.0)
    lines = [line.split(" | ")[0] for line in quiet.export_text().splitlines() if ": batch " in line]
    assert lines == ["epoch 1: batch 53/53", "epoch 2: batch 53/53"]  # only each epoch's last


# --------------------------------------------------------------------------- kill -9 while training

TRAINER = r"""
import sys, time
import torch
from tying.tasks.lm import LMData, LMTask, LMTrain, LossConfig, LSTMModel
from tying.training import Trainer

torch.set_num_threads(1)  # as the test process: the same reduction order, the same bits
corpus, ckpt, log = sys.argv[1:4]

class Logging(LMTask):
    def step(self, model, batch, carry):
        out = super().step(model, batch, carry)
        with open(log, "a") as f:
            f.write(out.loss.item().hex() + "\n")
        time.sleep(0.03)  # slow enough to be killed mid-run; sleeping changes no number
        return out

TRAIN = dict(epochs=6, batch_size=8, eval_batch_size=4, bptt=10, optimizer="sgd", lr=2.0, momentum=0.5, clip=0.25, lr_schedule="plateau", max_batches=6, seed=3)
task = Logging({"data": LMData(corpus=corpus), "model": LSTMModel(embedding_size=16, hidden_size=16, num_layers=1, tie=True),
                "loss": LossConfig(), "train": LMTrain(**TRAIN)})
data = task.load_data(None)
torch.manual_seed(0)
Trainer(task, task.build_model(data), data, ckpt).fit(resume=len(sys.argv) > 4)
"""


def test_resume_after_kill_9_reproduces_every_step_loss(tiny_corpus_dir: Path, tmp_path: Path) -> None:
    def run(folder: Path, log: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", TRAINER, str(tiny_corpus_dir), str(folder), str(log), *extra])

    assert run(tmp_path / "full", tmp_path / "full.log").wait(timeout=300) == 0
    full = [float.fromhex(x) for x in (tmp_path / "full.log").read_text().split()]
    folder, log = tmp_path / "run", tmp_path / "run.log"
    proc = run(folder, log)
    try:
        deadline = time.monotonic() + 300
        while not (folder / STATE_FILE).is_file():  # at least one epoch checkpointed
            assert proc.poll() is None and time.monotonic() < deadline, "the training process ended early"
            time.sleep(0.01)
        time.sleep(random.Random(0).uniform(0.0, 0.15))  # then somewhere in the following epochs
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    killed = [float.fromhex(x) for x in text.splitlines()[: text.count("\n")]]  # complete lines only
    saved = read_train_state(folder / STATE_FILE).state.epoch
    assert 1 <= saved < 6 and killed == full[: len(killed)]
    log.write_text("")
    assert run(folder, log, "resume").wait(timeout=300) == 0
    resumed = [float.fromhex(x) for x in log.read_text().split()]
    assert killed[: saved * 6] + resumed == full  # the lost steps and the rest, recomputed exactly
    leftovers = {p.name for p in folder.iterdir()} - {BEST_FILE, STATE_FILE, "model-epoch006.safetensors"}
    assert all(n.startswith(("model-epoch", ".")) for n in leftovers), leftovers
