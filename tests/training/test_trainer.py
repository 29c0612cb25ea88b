"""Training loop: learning, determinism, exact resume, schedules, checkpoints, reports."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

import tying
from tying.data import BPTTBatches, Corpus, batchify
from tying.errors import CheckpointError
from tying.models import LSTMConfig, LSTMLanguageModel
from tying.training import (
    Run,
    TrainConfig,
    Trainer,
    TrainResult,
    comparison_table,
    detach_state,
    lm_loss,
    next_lr,
    perplexity,
    plot_valid_ppl,
    read_train_state,
)
from tying.training.trainer import BEST_FILE, STATE_FILE

CONFIG = TrainConfig(epochs=2, batch_size=8, eval_batch_size=4, bptt=10, lr=5.0, seed=7)


def _model(vocab: int, tie: bool = True, seed: int = 0) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    return LSTMLanguageModel(LSTMConfig(vocab, 24, 24, num_layers=1, dropout=0.1, tie=tie))


def _fit(corpus: Corpus, folder: Path, config: TrainConfig = CONFIG, resume: bool = False, **kw: Any) -> TrainResult:
    model = _model(len(corpus.dictionary))
    return Trainer(model, corpus.train, corpus.valid, corpus.test, config, folder, **kw).fit(resume=resume)


def _losses(result: TrainResult) -> list[tuple[float, float]]:
    return [(m["train_loss"], m["valid_loss"]) for m in result.history]


@pytest.fixture
def corpus(tiny_corpus_dir: Path) -> Corpus:
    return Corpus(tiny_corpus_dir)


def test_two_epochs_lower_validation_perplexity(corpus: Corpus, tmp_path: Path) -> None:
    result = _fit(corpus, tmp_path)
    first, second = (m["valid_ppl"] for m in result.history)
    assert second < first < len(corpus.dictionary)
    assert result.best_epoch == 2 and result.best_valid_ppl == second
    assert result.test_ppl is not None and result.test_ppl < len(corpus.dictionary) / 2
    json.dumps(result.to_dict())  # history is JSON-serialisable
    m = result.history[0]
    assert m["train_tokens"] == len(corpus.train) // 8 * 8 - 8  # every row but the last is an input
    assert m["tokens_per_s"] > 0 and m["wall_s"] >= m["train_s"] > 0 and m["lr"] == 5.0


def test_same_seed_same_losses_other_seed_other_losses(corpus: Corpus, tmp_path: Path) -> None:
    a = _fit(corpus, tmp_path / "a")
    b = _fit(corpus, tmp_path / "b")
    c = _fit(corpus, tmp_path / "c", replace(CONFIG, seed=8))  # other dropout masks
    assert _losses(a) == _losses(b) and a.test_loss == b.test_loss
    assert _losses(a) != _losses(c)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_resume_after_a_crash_continues_exactly(corpus: Corpus, tmp_path: Path, momentum: float) -> None:
    config = replace(CONFIG, epochs=3, momentum=momentum, lr=1.0 if momentum else 5.0)
    full = _fit(corpus, tmp_path / "full", config)

    calls = 0

    def crashing_loss(*args: Any) -> Any:  # dies in the middle of epoch 2
        nonlocal calls
        calls += 1
        if calls == 80:  # 53 windows per epoch
            raise _Crash
        return lm_loss(*args)

    with pytest.raises(_Crash):
        _fit(corpus, tmp_path / "run", config, loss_fn=crashing_loss)
    assert read_train_state(tmp_path / "run" / STATE_FILE).state.epoch == 1
    torch.manual_seed(123)  # the resumed process starts with other RNG state
    resumed = _fit(corpus, tmp_path / "run", config, resume=True)
    assert _losses(resumed) == _losses(full)
    assert resumed.test_loss == full.test_loss


def test_resume_extends_a_finished_run_and_checks_settings(corpus: Corpus, tmp_path: Path) -> None:
    three = _fit(corpus, tmp_path / "three", replace(CONFIG, epochs=3))
    _fit(corpus, tmp_path / "run")
    extended = _fit(corpus, tmp_path / "run", replace(CONFIG, epochs=3), resume=True)
    assert _losses(extended) == _losses(three)
    with pytest.raises(CheckpointError, match=r"bptt=10, now 12.*only epochs may change"):
        _fit(corpus, tmp_path / "run", replace(CONFIG, bptt=12), resume=True)


def test_checkpoint_folder_holds_latest_best_and_state(corpus: Corpus, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _fit(corpus, folder, replace(CONFIG, epochs=3))
    assert sorted(p.name for p in folder.iterdir()) == [BEST_FILE, "model-epoch003.safetensors", STATE_FILE]
    saved = read_train_state(folder / STATE_FILE)
    assert saved.state.epoch == 3 and len(saved.state.history) == 3
    assert saved.state.model_file == "model-epoch003.safetensors" and saved.config["bptt"] == 10
    assert "rng.cpu" in saved.rng
    model = _model(len(corpus.dictionary), seed=1)
    tying.load(model, folder / "model-epoch003.safetensors")  # tie-aware model file
    assert model.decoder.weight is model.encoder.weight


def test_not_a_state_file_is_refused(corpus: Corpus, tmp_path: Path) -> None:
    tying.save(_model(10), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"not a tying training-state file"):
        read_train_state(tmp_path / "model.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{junk")
    with pytest.raises(CheckpointError, match=r"cannot read training state .*junk\.safetensors"):
        read_train_state(tmp_path / "junk.safetensors")


def test_capped_epochs_continue_through_the_stream(corpus: Corpus, tmp_path: Path) -> None:
    seen: list[torch.Tensor] = []

    def recording_loss(model: Any, inputs: torch.Tensor, targets: torch.Tensor, state: Any) -> Any:
        seen.append(inputs.clone())
        return lm_loss(model, inputs, targets, state)

    result = _fit(corpus, tmp_path, replace(CONFIG, epochs=3, max_batches=20), loss_fn=recording_loss)
    windows = BPTTBatches(batchify(corpus.train, 8), 10)
    assert 40 < len(windows) < 60  # so the third epoch wraps round to the start
    expected = [windows[k % len(windows)][0] for k in range(60)]
    assert all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))
    assert [m["train_tokens"] for m in result.history] == [sum(x.numel() for x in expected[i : i + 20]) for i in (0, 20, 40)]


def test_lr_schedules() -> None:
    plateau = TrainConfig(lr_schedule="plateau", lr_decay=4.0)
    assert next_lr(plateau, 20.0, epoch=1, improved=True) == 20.0
    assert next_lr(plateau, 20.0, epoch=1, improved=False) == 5.0
    step = TrainConfig(lr_schedule="step", lr_decay=2.0, decay_start=4)  # Zaremba et al.'s small model
    assert [next_lr(step, 1.0, epoch=e, improved=True) for e in (3, 4, 5)] == [1.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="lr_schedule must be 'plateau' or 'step'"):
        TrainConfig(lr_schedule="cosine")  # type: ignore[arg-type]


def test_plateau_divides_lr_in_the_loop(corpus: Corpus, tmp_path: Path) -> None:
    # lr 100 overshoots, so validation stops improving and the schedule divides the rate.
    result = _fit(corpus, tmp_path, replace(CONFIG, epochs=4, lr=100.0, clip=0.0))
    lrs = [m["lr"] for m in result.history]
    improved = [m["valid_loss"] <= min(h["valid_loss"] for h in result.history[: i + 1]) for i, m in enumerate(result.history)]
    for i in range(1, len(lrs)):
        assert lrs[i] == (lrs[i - 1] if improved[i - 1] else lrs[i - 1] / 4)


def test_lm_loss_is_cross_entropy_of_the_logits() -> None:
    model = _model(15).eval()
    x, y = torch.randint(0, 15, (6, 2)), torch.randint(0, 15, (6, 2))
    loss, state = lm_loss(model, x, y, model.init_state(2))
    logits, _ = model(x, model.init_state(2))
    assert torch.allclose(loss, F.cross_entropy(logits.view(-1, 15), y.view(-1)))
    assert all(not t.requires_grad or t.grad_fn is not None for layer in state for t in layer)
    assert perplexity(math.log(42.0)) == pytest.approx(42.0) and perplexity(1e6) == math.inf


def test_detach_state_cuts_history() -> None:
    h = torch.ones(2, requires_grad=True) * 2
    out = detach_state((h, (h, None)))
    assert out[0].grad_fn is None and out[1][0].grad_fn is None and out[1][1] is None


def test_console_gets_one_line_per_epoch(corpus: Corpus, tmp_path: Path) -> None:
    console = Console(record=True, width=200, force_terminal=False)
    _fit(corpus, tmp_path, console=console)
    text = console.export_text()
    assert "epoch   1 | lr 5 | train ppl" in text and "epoch   2" in text and "test ppl" in text


def test_report_table_and_plot(tmp_path: Path) -> None:
    history = [{"epoch": e, "valid_ppl": p, "train_tokens": 100, "train_s": 1.0, "wall_s": 1.5} for e, p in [(1, 90.0), (2, 70.0)]]
    runs = [
        Run("tied", 300, 200, TrainResult(history=history, best_epoch=2, best_valid_ppl=70.0, test_ppl=68.0)),
        Run("untied", 300, 300, TrainResult(history=history, best_epoch=2, best_valid_ppl=75.0, test_ppl=71.5)),
    ]
    console = Console(record=True, width=120)
    console.print(comparison_table(runs))
    text = console.export_text()
    assert "unique parameters" in text and "68.00" in text and "71.50" in text and "100" in text and "3.0 s" in text
    path = plot_valid_ppl(runs, tmp_path / "p.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(json.dumps([r.to_dict() for r in runs]))[1]["unique_parameters"] == 300
