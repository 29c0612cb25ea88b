"""The training engine: one loop for every task (:class:`tying.training.Task`).

Per epoch: the task's training batches (at most ``max_batches``, continuing through the batches
from where the previous capped epoch stopped) → ``task.step`` → backward → clip the global
gradient norm → optimizer step; then the task's metrics on the validation data, the learning
rate schedule (:func:`tying.training.config.next_lr`, driven by the task's first metric) and a
checkpoint. After the last epoch the model of the best validation epoch is scored on the test data.

Checkpoint folder:

* ``model-epoch{N:03d}.safetensors``: the model after the latest epoch (:func:`tying.save`);
* ``best.safetensors``: the model of the best validation metric so far;
* ``train_state.safetensors``: optimizer, RNG, schedule, history and, after an interrupt, the
  position in the epoch and the task's carried state (:mod:`tying.training.state`), written last
  as the commit point.

The only randomness is what the task draws from the torch RNG (dropout; a shuffle seeded by the
epoch), whose state is checkpointed, so a run resumed from its last checkpoint — an epoch's end
or the batch where Ctrl-C stopped it — computes exactly the losses the uninterrupted run would have.

Data parallelism: launched by ``torchrun --nproc-per-node N``, each rank trains on its share of
every global batch (:meth:`Task.split_batch`) through ``DistributedDataParallel`` or FSDP2
(:func:`tying.distributed.fully_shard_tied`, every tie group in one shard unit), so the gradient
is that of the global batch; rank 0 writes checkpoints and metrics.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

import tying
import tying.distributed
from tying.errors import CheckpointError
from tying.training.config import build_optimizer, next_lr, step_lr
from tying.training.settings import changed_settings
from tying.training.state import TrainState, read_train_state, save_train_state
from tying.training.task import StepOutput, Task

__all__ = ["Trainer", "TrainResult", "Interrupted", "STATE_FILE", "BEST_FILE"]

STATE_FILE = "train_state.safetensors"
BEST_FILE = "best.safetensors"


class Interrupted(Exception):
    """Training stopped by SIGINT (Ctrl-C) after saving a resumable point; the message says where."""

    #: How a command stopped this way exits (128 + SIGINT), and how `tying compare` recognises such a run.
    exit_status = 130


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        history: per-epoch metrics (``epoch``, ``lr``, ``train_loss``, ``valid_<metric>`` for
            each metric, ``train_<unit>``, ``<unit>_per_s``, ``train_s``, ``wall_s`` = training +
            validation, plus the task's :meth:`~Task.train_metrics` as ``train_<name>``).
        unit: what throughput counts (``"tokens"``).
        best_epoch: the epoch with the best validation value of the task's first metric.
        valid: that epoch's validation metrics; test: the test metrics of its model (None
            without test data); test_epoch: the epoch of the model tested (``best_epoch``, but
            the last under FSDP, which does not reload checkpoints).
        test_last: the test metrics of the last epoch's model (what papers that test once after
            training report; ``test`` itself when the last epoch is the one tested).
    """

    unit: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] | None = None
    test_epoch: int | None = None
    test_last: dict[str, float] | None = None

    @property
    def wall_s(self) -> float:
        """Seconds spent training and validating in all epochs (checkpoint writing excluded)."""
        return sum(m["wall_s"] for m in self.history)

    @property
    def throughput(self) -> float:
        """Training items (``unit``) per second over all epochs (evaluation excluded)."""
        train_s = sum(m["train_s"] for m in self.history)
        return sum(m[f"train_{self.unit}"] for m in self.history) / train_s if train_s else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, history included."""
        return {
            "unit": self.unit,
            "best_epoch": self.best_epoch,
            "valid": self.valid,
            "test": self.test,
            "test_epoch": self.test_epoch,
            "test_last": self.test_last,
            "wall_s": self.wall_s,
            f"{self.unit}_per_s": self.throughput,
            "history": self.history,
        }


class _Call(nn.Module):
    """Runs ``fn(model, *args)`` as its forward, so the task's loss goes through the DDP/FSDP
    wrapper's forward (which DDP needs to synchronise gradients and FSDP to gather the root's
    parameters) even when the task calls the model's methods (``features``, ``logits``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


class Trainer:
    """Trains ``model`` on ``data`` as ``task`` says, with the task's ``[train]`` settings.

    Args:
        task: the task (its :attr:`~Task.train` settings drive the loop).
        model: built by ``task.build_model(data)``; its ties are kept through checkpoints.
        data: what ``task.load_data`` returned.
        checkpoint_dir: folder for the checkpoints (created when the first one is written).
        optimizer: defaults to :func:`~tying.training.config.build_optimizer`; its learning rate
            is set by the schedule each epoch.
        console: epoch summaries and progress (None: silent). On a terminal a progress bar; else
            a progress line every ``progress_every`` seconds.
    """

    def __init__(
        self,
        task: Task,
        model: nn.Module,
        data: Any,
        checkpoint_dir: str | os.PathLike[str],
        *,
        optimizer: torch.optim.Optimizer | None = None,
        console: Console | None = None,
        progress_every: float = 30.0,
    ) -> None:
        self.task, self.model, self.data, self.config = task, model, data, task.train
        self.console, self.progress_every = console, progress_every
        self.checkpoint_dir = Path(checkpoint_dir)
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.runner: nn.Module = _Call(model)
        if self.world_size > 1:
            self.runner = self._parallel(self.runner)
        self.optimizer = optimizer or build_optimizer(self.config, model)
        self.params = [p for p in model.parameters() if p.requires_grad]  # shared Parameters once
        self.state = TrainState(lr=self.config.first_epoch_lr or self.config.lr)
        self.stop_requested = False
        self.metadata = task.checkpoint_metadata(data)  # written into every model checkpoint

    def _parallel(self, runner: nn.Module) -> nn.Module:
        if self.config.parallel == "fsdp":
            from tying.distributed import fully_shard_tied

            fully_shard_tied(runner)  # in place: every tie group in one unit
            return runner
        return nn.parallel.DistributedDataParallel(runner)

    # ------------------------------------------------------------------ loop

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train until ``epochs`` epochs are complete, then score the best-validation model on
        the test data (the model is left holding those weights).

        With ``resume=True`` and a checkpoint in ``checkpoint_dir``, continue from it: model,
        optimizer, learning rate, history, RNG and an interrupted epoch's position are restored,
        so the remaining batches give the same losses as an uninterrupted run. Raising
        ``epochs`` extends a finished run. Ctrl-C saves a resumable point and raises
        :class:`Interrupted`.
        """
        torch.manual_seed(self.config.seed)
        if resume and (self.checkpoint_dir / STATE_FILE).is_file():
            self._restore()
        with self._catch_interrupts():
            while self.state.epoch < self.config.epochs:
                self._run_epoch()
        result = TrainResult(self.task.unit, list(self.state.history), self.state.best_epoch, test_epoch=self.state.epoch)
        result.test = result.test_last = self._evaluate("test")  # the model holds the last epoch's weights
        if self.state.best_epoch is not None:
            result.valid = {k[6:]: v for k, v in self.state.history[self.state.best_epoch - 1].items() if k.startswith("valid_")}
            if self.state.best_epoch != self.state.epoch:
                if self._sharded():
                    self._log(f"FSDP: the test data scores the last epoch's model, not epoch {self.state.best_epoch}'s")
                else:
                    self._load(self.checkpoint_dir / BEST_FILE)
                    result.test_epoch = self.state.best_epoch
                    result.test = self._evaluate("test")
        if result.test is not None:
            self._log(f"test {self._shown(result.test)} (model of epoch {result.test_epoch})")
            if result.test_epoch != self.state.epoch and result.test_last is not None:
                self._log(f"test {self._shown(result.test_last)} (model of the last epoch, {self.state.epoch})")
        return result

    def _shown(self, values: dict[str, float]) -> str:
        """``"ppl 12.34, ..."``: the reported metrics (else the first) of ``values``."""
        shown = [m for m in self.task.metrics if m.report] or list(self.task.metrics[:1])
        return ", ".join(f"{m.label} {m.format(values.get(m.name))}" for m in shown)

    def _run_epoch(self) -> None:
        epoch = self.state.epoch + 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.state.lr
        train_loss, count, train_s = self._train_epoch(epoch)
        eval_start = time.perf_counter()
        valid = self._evaluate("valid")
        assert valid is not None
        first = self.task.metrics[0]
        improved = self.state.best_value is None or first.better(valid[first.name], self.state.best_value)
        unit = self.task.unit
        # The lr of the epoch's last step (the same as its first unless the schedule is per step).
        metrics: dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss}
        metrics |= {f"train_{k}": v for k, v in self.task.train_metrics(train_loss).items()}
        metrics |= {f"valid_{k}": v for k, v in valid.items()}
        metrics |= {f"train_{unit}": count, f"{unit}_per_s": count / train_s, "train_s": train_s}
        if improved:
            self.state.best_value, self.state.best_epoch = valid[first.name], epoch
        self.state.lr = next_lr(self.config, self.state.lr, epoch=epoch, improved=improved)
        self.state.epoch, self.state.step, self.state.partial, self.state.carry = epoch, 0, {}, None
        # Before checkpointing: I/O speed is not training speed. An epoch resumed after an
        # interrupt counts its training time before the interrupt, not the time spent stopped.
        metrics["wall_s"] = train_s + time.perf_counter() - eval_start
        self.state.history.append(metrics)
        self._checkpoint(f"model-epoch{epoch:03d}.safetensors", best=improved)
        self._log(
            f"epoch {epoch:3d} | lr {metrics['lr']:g} | train loss {train_loss:.3f} | "
            f"valid {self._shown(valid)}{' (best)' if improved else ''} | "
            f"{metrics[f'{unit}_per_s']:,.0f} {unit}/s | {metrics['wall_s']:.1f} s"
        )

    def _train_epoch(self, epoch: int) -> tuple[float, int, float]:
        """Train the batches of ``epoch`` (from an interrupted position if there is one); returns
        the count-weighted mean loss, the items counted, and the training seconds."""
        self.model.train()
        batches = self.task.train_batches(self.data, epoch)
        n = min(len(batches), self.config.max_batches) if self.config.max_batches else len(batches)
        # A capped epoch continues where the previous one stopped (wrapping round), so a capped
        # run still sees all the batches rather than its first n again and again.
        first = (epoch - 1) * n % len(batches)
        done, carry = self.state.step, self.state.carry
        total, count = self.state.partial.get("loss_sum", 0.0), int(self.state.partial.get("count", 0))
        before = self.state.partial.get("train_s", 0.0)
        start = time.perf_counter()
        with self._progress(f"epoch {epoch}", n, done) as advance:
            for k in range(done, n):
                batch = batches[(first + k) % len(batches)]
                if self.world_size > 1:
                    batch = self.task.split_batch(batch, self.rank, self.world_size)
                out: StepOutput = self.runner(self.task.step, batch, carry)
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if self.config.clip > 0:
                    nn.utils.clip_grad_norm_(self.params, self.config.clip)
                lr = step_lr(self.config, (epoch - 1) * n + k + 1)  # capped or not, epochs have n steps each
                if lr is not None:
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                self.optimizer.step()
                total += out.loss.item() * out.count
                count += out.count
                carry = out.carry
                advance(total / count, count / (before + time.perf_counter() - start))
                if self._should_stop():
                    self._save_interrupted(epoch, k + 1, total, count, before + time.perf_counter() - start, carry)
        train_s = before + time.perf_counter() - start
        if self.world_size > 1:  # every rank's (loss x count) and count: the global batches'
            sums = torch.tensor([total, float(count)], dtype=torch.float64)
            dist.all_reduce(sums)
            total, count = sums[0].item(), int(sums[1].item())
        return total / count, count, train_s

    def _evaluate(self, split: str) -> dict[str, float] | None:
        """The task's metrics on ``split``, or None when the data has no such split."""
        self.model.eval()
        with torch.no_grad():
            runner = self.runner if self._sharded() else _Call(self.model)
            return runner(self.task.evaluate, self.data, split)

    # ------------------------------------------------------------------ interrupts

    @contextmanager
    def _catch_interrupts(self) -> Iterator[None]:
        """While training, the first SIGINT asks the loop to stop after the current batch (a
        second one stops at once); off the main thread signals are left alone."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _should_stop(self) -> bool:
        if self.world_size == 1:
            return self.stop_requested
        flag = torch.tensor([int(self.stop_requested)])
        dist.all_reduce(flag)  # every rank stops after the same batch
        return bool(flag.item())

    def _save_interrupted(self, epoch: int, step: int, total: float, count: int, train_s: float, carry: Any) -> None:
        self.state.step, self.state.carry = step, carry
        self.state.partial = {"loss_sum": total, "count": count, "train_s": train_s}
        self._checkpoint(f"model-epoch{epoch:03d}-step{step:06d}.safetensors", best=False)
        raise Interrupted(
            f"interrupted in epoch {epoch} after batch {step}; saved a resumable point in {str(self.checkpoint_dir)!r}"
        )

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self, model_file: str, *, best: bool) -> None:
        folder, previous = self.checkpoint_dir, self.state.model_file
        self.state.model_file = model_file
        metadata = {**self.metadata, "epoch": str(self.state.epoch), "step": str(self.state.step)}
        if self.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
        if self.rank == 0 or self._sharded():  # FSDP: every rank takes part in the gather, rank 0 writes
            save = tying.distributed.save if self._sharded() else tying.save
            save(self.model, folder / model_file, metadata=metadata)
            if best:
                # Not covered by the commit point, but a resume after a crash here recomputes
                # this epoch bit for bit and rewrites the same file.
                save(self.model, folder / BEST_FILE, metadata=metadata)
        if self.rank == 0:
            save_train_state(folder / STATE_FILE, self.state, self._optimizer_state(), self._settings())
            if previous and previous != model_file:
                (folder / previous).unlink(missing_ok=True)
        if self.world_size > 1:
            dist.barrier()

    def _sharded(self) -> bool:
        return self.config.parallel == "fsdp" and self.world_size > 1

    def _optimizer_state(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        # FSDP shards the optimizer state with the parameters: rank 0 holds a part only. Runs
        # under FSDP are not resumable (see _load), so the state file keeps the schedule alone.
        return {"state": {}, "param_groups": state["param_groups"]} if self._sharded() else state

    def _settings(self) -> dict[str, Any]:
        return {name: table.model_dump(mode="json") for name, table in self.task.config.items()}

    def _load(self, path: Path) -> None:
        if self._sharded():
            raise CheckpointError(
                f"cannot load {str(path)!r} into an FSDP-sharded model: runs under train.parallel='fsdp' are not resumable "
                "and keep the last epoch's model; use train.parallel='ddp' to resume or to test the best epoch's model"
            )
        tying.load(self.model, path)

    def _restore(self) -> None:
        saved = read_train_state(self.checkpoint_dir / STATE_FILE)
        if saved.state.model_file is None:
            raise CheckpointError(f"{str(self.checkpoint_dir / STATE_FILE)!r} names no model checkpoint")
        changed = changed_settings(saved.config, self.task.config)
        if changed:
            raise CheckpointError(
                f"cannot resume from {str(self.checkpoint_dir)!r}: its run used different settings ({'; '.join(changed)}); "
                "only train.epochs may change on resume; use the old settings or a new run folder"
            )
        self._load(self.checkpoint_dir / saved.state.model_file)
        self.state = saved.restore(self.optimizer)
        device = self.params[0].device
        self.state.carry = _to(self.state.carry, device)
        where = f"batch {self.state.step} of epoch {self.state.epoch + 1}" if self.state.step else f"epoch {self.state.epoch}"
        self._log(f"resumed from {str(self.checkpoint_dir / saved.state.model_file)!r} after {where}")

    # ------------------------------------------------------------------ output

    @contextmanager
    def _progress(self, label: str, total: int, done: int) -> Iterator[Callable[[float, float], None]]:
        """Yields ``advance(mean loss, items/s)``, called after each batch: a progress bar on a
        terminal, else a line every ``progress_every`` seconds (so a log file shows progress)."""
        console, unit = self.console, self.task.unit
        if console is None or self.rank != 0:
            yield lambda loss, speed: None
        elif console.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as progress:
                bar = progress.add_task(label, total=total, completed=done)
                yield lambda loss, speed: progress.update(bar, advance=1, description=f"{label} loss {loss:.3f}")
        else:
            step, last = done, time.monotonic()

            def advance(loss: float, speed: float) -> None:
                nonlocal step, last
                step += 1
                if time.monotonic() - last >= self.progress_every or step == total:
                    last = time.monotonic()
                    self._log(f"{label}: batch {step:,}/{total:,} | loss {loss:.3f} | {speed:,.0f} {unit}/s")

            yield advance

    def _log(self, message: str) -> None:
        if self.console is not None and self.rank == 0:
            self.console.print(message, highlight=False, soft_wrap=True)


def _to(carry: Any, device: torch.device) -> Any:
    if carry is None or isinstance(carry, torch.Tensor):
        return None if carry is None else carry.to(device)
    return tuple(_to(c, device) for c in carry)
