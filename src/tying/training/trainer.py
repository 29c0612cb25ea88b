"""The language-model training loop: truncated BPTT, SGD with gradient clipping and a
learning-rate schedule, per-epoch validation, checkpoints and exact resume.

Each epoch starts from a zero recurrent state and walks the batchified training stream in
windows of ``bptt`` tokens (:class:`tying.data.BPTTBatches`). The state is carried from window
to window but *detached*, so gradients are truncated at window boundaries (Williams & Peng
1990; Zaremba et al. 2014, arXiv 1409.2329). Per window: ``loss_fn`` → backward → clip the
global gradient norm → SGD step. After the epoch the model is scored on the validation data,
the learning rate updated (:func:`tying.training.config.next_lr`), and a checkpoint written.

Checkpoint folder:

* ``model-epoch{N:03d}.safetensors``: the model after the latest epoch (:func:`tying.save`);
* ``best.safetensors``: the model of the best validation perplexity so far;
* ``train_state.safetensors``: optimizer, RNG, schedule and history
  (:mod:`tying.training.state`), written last as the commit point.

Nothing is shuffled and the only randomness is dropout, drawn from the torch RNG whose state
is checkpointed, so a run resumed from its last checkpoint computes exactly the losses the
uninterrupted run would have.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

import tying
from tying.data.batching import BPTTBatches, batchify
from tying.errors import CheckpointError
from tying.training.config import TrainConfig, next_lr
from tying.training.losses import LossFn, lm_loss, perplexity
from tying.training.state import TrainState, read_train_state, save_train_state

__all__ = ["Trainer", "TrainResult", "detach_state", "STATE_FILE", "BEST_FILE"]

STATE_FILE = "train_state.safetensors"
BEST_FILE = "best.safetensors"


def detach_state(state: Any) -> Any:
    """``state`` (a tensor, or nested tuples of tensors, or None) cut from its autograd history,
    so the next window's backward stops here (truncated BPTT)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(detach_state(s) for s in state)


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        history: per-epoch metrics (``epoch``, ``lr``, ``train_loss``, ``train_ppl``,
            ``valid_loss``, ``valid_ppl``, ``train_tokens``, ``tokens_per_s``, ``train_s``, ``wall_s``;
            losses in nats per token, ``wall_s`` = training + validation, ``lr`` the rate used).
        best_epoch, best_valid_ppl: the epoch with the lowest validation perplexity.
        test_loss, test_ppl: test cross-entropy and perplexity of that epoch's model (None without test data).
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_valid_ppl: float | None = None
    test_loss: float | None = None
    test_ppl: float | None = None

    @property
    def wall_s(self) -> float:
        """Seconds spent training and validating in all epochs (checkpoint writing excluded)."""
        return sum(m["wall_s"] for m in self.history)

    @property
    def tokens_per_s(self) -> float:
        """Training throughput over all epochs (evaluation excluded)."""
        train_s = sum(m["train_s"] for m in self.history)
        return sum(m["train_tokens"] for m in self.history) / train_s if train_s else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, history included."""
        return {
            "best_epoch": self.best_epoch,
            "best_valid_ppl": self.best_valid_ppl,
            "test_loss": self.test_loss,
            "test_ppl": self.test_ppl,
            "wall_s": self.wall_s,
            "tokens_per_s": self.tokens_per_s,
            "history": self.history,
        }


class Trainer:
    """Trains a language model ``model(tokens, state) -> (logits, state)`` with
    ``model.init_state(batch_size)`` (e.g. :class:`tying.models.LSTMLanguageModel`).

    Args:
        model: the model; its ties (declared with :func:`tying.tie`) are kept through
            checkpoints.
        train, valid, test: 1-D token-id streams (:class:`tying.data.Corpus` splits); ``test``
            may be None.
        config: hyper-parameters.
        checkpoint_dir: folder for the per-epoch checkpoints (created if missing).
        loss_fn: training objective (:data:`tying.training.losses.LossFn`); evaluation always
            uses cross-entropy (:func:`~tying.training.losses.lm_loss`).
        optimizer: defaults to ``torch.optim.SGD(model.parameters(), lr, momentum, weight_decay)``.
            Its learning rate is set by the trainer's schedule each epoch.
        console: where epoch summaries and the progress bar go; None (default) trains silently.
            The bar is shown only when the console is a terminal.
    """

    def __init__(
        self,
        model: nn.Module,
        train: torch.Tensor,
        valid: torch.Tensor,
        test: torch.Tensor | None,
        config: TrainConfig,
        checkpoint_dir: str | os.PathLike[str],
        *,
        loss_fn: LossFn = lm_loss,
        optimizer: torch.optim.Optimizer | None = None,
        console: Console | None = None,
    ) -> None:
        init_state = getattr(model, "init_state", None)
        if not callable(init_state):
            raise TypeError(
                f"{type(model).__name__} has no init_state(batch_size) method; the trainer calls it for the "
                "recurrent state at the start of each pass (return None for a stateless model)"
            )
        self.model, self.config, self.loss_fn, self.console = model, config, loss_fn, console
        self.init_state: Callable[[int], Any] = init_state
        device = next(model.parameters()).device
        self.train_data = batchify(train, config.batch_size).to(device)
        self.valid_data = batchify(valid, config.eval_batch_size).to(device)
        self.test_data = None if test is None else batchify(test, config.eval_batch_size).to(device)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.optimizer = optimizer or torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.state = TrainState(lr=config.lr)

    # ------------------------------------------------------------------ loop

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train until ``config.epochs`` epochs are complete, then score the best-validation model
        on the test data (the model is left holding those weights).

        With ``resume=True`` and a checkpoint in ``checkpoint_dir``, continue from it: model,
        optimizer, learning rate, history and RNG are restored, so the remaining epochs give the
        same losses as an uninterrupted run. Raising ``config.epochs`` extends a finished run.
        """
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.config.seed)
        if resume and (self.checkpoint_dir / STATE_FILE).is_file():
            self._restore()
        while self.state.epoch < self.config.epochs:
            self._run_epoch()
        result = TrainResult(history=list(self.state.history), best_epoch=self.state.best_epoch)
        if self.state.best_valid_loss is not None:
            result.best_valid_ppl = perplexity(self.state.best_valid_loss)
            tying.load(self.model, self.checkpoint_dir / BEST_FILE)
        if self.test_data is not None:
            result.test_loss = self.evaluate(self.test_data)
            result.test_ppl = perplexity(result.test_loss)
            self._log(f"test ppl {result.test_ppl:.2f} (model of epoch {result.best_epoch})")
        return result

    def _run_epoch(self) -> None:
        epoch = self.state.epoch + 1
        start = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = self.state.lr
        train_loss, tokens = self.train_epoch(epoch)
        train_s = time.perf_counter() - start
        valid_loss = self.evaluate(self.valid_data)
        improved = self.state.best_valid_loss is None or valid_loss < self.state.best_valid_loss
        metrics = {
            "epoch": epoch,
            "lr": self.state.lr,
            "train_loss": train_loss,
            "train_ppl": perplexity(train_loss),
            "valid_loss": valid_loss,
            "valid_ppl": perplexity(valid_loss),
            "train_tokens": tokens,
            "tokens_per_s": tokens / train_s,
            "train_s": train_s,
        }
        if improved:
            self.state.best_valid_loss, self.state.best_epoch = valid_loss, epoch
        self.state.lr = next_lr(self.config, self.state.lr, epoch=epoch, improved=improved)
        self.state.epoch = epoch
        metrics["wall_s"] = time.perf_counter() - start  # before checkpointing: I/O speed is not training speed
        self.state.history.append(metrics)
        self._checkpoint(improved)
        self._log(
            f"epoch {epoch:3d} | lr {metrics['lr']:g} | train ppl {metrics['train_ppl']:.2f} | "
            f"valid ppl {metrics['valid_ppl']:.2f}{' (best)' if improved else ''} | "
            f"{metrics['tokens_per_s']:,.0f} tok/s | {metrics['wall_s']:.1f} s"
        )

    def train_epoch(self, epoch: int) -> tuple[float, int]:
        """One pass over the training windows (at most ``config.max_batches``); returns the
        token-weighted mean training loss and the number of target tokens."""
        self.model.train()
        batches = BPTTBatches(self.train_data, self.config.bptt)
        n = len(batches) if self.config.max_batches is None else min(len(batches), self.config.max_batches)
        # A capped epoch continues where the previous one stopped (wrapping round), so a capped
        # run still sees the whole stream rather than its first n windows again and again.
        first = (epoch - 1) * n % len(batches)
        params = [p for p in self.model.parameters() if p.requires_grad]  # shared Parameters once
        state = self.init_state(self.config.batch_size)
        total, tokens = 0.0, 0
        with self._progress() as progress:
            task = progress.add_task(f"epoch {epoch}", total=n)
            for k in range(first, first + n):
                inputs, targets = batches[k % len(batches)]
                state = detach_state(state)
                loss, state = self.loss_fn(self.model, inputs, targets, state)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.config.clip > 0:
                    nn.utils.clip_grad_norm_(params, self.config.clip)
                self.optimizer.step()
                total += loss.item() * targets.numel()
                tokens += targets.numel()
                progress.update(task, advance=1, description=f"epoch {epoch} loss {total / tokens:.3f}")
        return total / tokens, tokens

    @torch.no_grad()
    def evaluate(self, data: torch.Tensor) -> float:
        """Token-weighted mean cross-entropy (nats) of the model, in eval mode, on batchified ``data``."""
        self.model.eval()
        state = self.init_state(data.size(1))
        total, tokens = 0.0, 0
        for inputs, targets in BPTTBatches(data, self.config.bptt):
            loss, state = lm_loss(self.model, inputs, targets, state)
            total += loss.item() * targets.numel()
            tokens += targets.numel()
        return total / tokens

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self, improved: bool) -> None:
        folder, previous = self.checkpoint_dir, self.state.model_file
        epoch = str(self.state.epoch)
        self.state.model_file = f"model-epoch{self.state.epoch:03d}.safetensors"
        tying.save(self.model, folder / self.state.model_file, metadata={"epoch": epoch})
        if improved:
            # Not covered by the commit point, but a resume after a crash here recomputes this
            # epoch bit for bit and rewrites the same file.
            tying.save(self.model, folder / BEST_FILE, metadata={"epoch": epoch})
        save_train_state(folder / STATE_FILE, self.state, self.optimizer, self.config.to_dict())
        if previous and previous != self.state.model_file:
            (folder / previous).unlink(missing_ok=True)

    def _restore(self) -> None:
        saved = read_train_state(self.checkpoint_dir / STATE_FILE)
        if saved.state.model_file is None:
            raise CheckpointError(f"{str(self.checkpoint_dir / STATE_FILE)!r} names no model checkpoint")
        mine = self.config.to_dict()
        changed = sorted(k for k in mine if k != "epochs" and saved.config.get(k) != mine[k])
        if changed:
            raise CheckpointError(
                f"cannot resume from {str(self.checkpoint_dir)!r}: its run used different settings "
                f"({', '.join(f'{k}={saved.config.get(k)!r}, now {mine[k]!r}' for k in changed)}); only epochs "
                "may change on resume; use the old settings or a new checkpoint folder"
            )
        tying.load(self.model, self.checkpoint_dir / saved.state.model_file)
        self.state = saved.restore(self.optimizer)
        self._log(f"resumed from {str(self.checkpoint_dir / saved.state.model_file)!r} after epoch {self.state.epoch}")

    # ------------------------------------------------------------------ output

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=self.console is None or not self.console.is_terminal,
        )

    def _log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False, soft_wrap=True)
