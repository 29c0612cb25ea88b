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

Device: the model and every training batch go to ``train.device`` (:mod:`tying.training.device`);
a task's ``evaluate`` reads its data onto the model's device itself.

Peers fitted by another library (:class:`~tying.training.external.ExternalModel`) take the same
path except the batch loop: each epoch is one call of their ``fit_epoch``, in one process.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from torch import nn

from tying.machine import peak_memory_mib
from tying.training.checkpoints import BEST_FILE, STATE_FILE, Checkpoints, settings_of
from tying.training.config import build_optimizer, next_lr, step_lr
from tying.training.device import resolve_device, to_device
from tying.training.external import ExternalModel
from tying.training.interrupts import StopRequest
from tying.training.progress import Output
from tying.training.result import Interrupted, TrainResult
from tying.training.state import TrainState
from tying.training.task import StepOutput, Task

__all__ = ["Trainer", "TrainResult", "Interrupted", "STATE_FILE", "BEST_FILE"]

Evaluate = Callable[..., "dict[str, float] | None"]


class _Call(nn.Module):
    """Runs ``fn(model, *args)`` as its forward, so the task's loss goes through the DDP/FSDP
    wrapper's forward (which DDP needs to synchronise gradients and FSDP to gather the root's
    parameters) even when the task calls the model's methods (``features``, ``logits``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


def _evaluator(task: Task) -> Callable[[int], Evaluate]:
    """``epoch -> evaluate``: the task's ``evaluate`` told the epoch whose model it scores. A task
    written before ``evaluate`` took ``epoch`` is called without it (with a DeprecationWarning)
    until tying 0.3."""
    params = inspect.signature(task.evaluate).parameters
    if "epoch" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return lambda epoch: functools.partial(task.evaluate, epoch=epoch)
    warnings.warn(
        f"{type(task).__name__}.evaluate(model, data, split) takes no epoch; accept the keyword argument "
        "`*, epoch: int` (the epoch whose model is scored): tasks without it are called without it until tying 0.3",
        DeprecationWarning,
        stacklevel=3,
    )
    return lambda epoch: task.evaluate


class Trainer:
    """Trains ``model`` on ``data`` as ``task`` says, with the task's ``[train]`` settings.

    Args:
        task: the task (its :attr:`~Task.train` settings drive the loop).
        model: built by ``task.build_model(data)``; its ties are kept through checkpoints. It is
            moved to ``train.device`` here (in place: its Parameters stay the same objects).
        data: what ``task.load_data`` returned.
        checkpoint_dir: folder for the checkpoints (created when the first one is written).
        optimizer: defaults to :func:`~tying.training.config.build_optimizer`; its learning rate
            is set by the schedule each epoch.
        console: epoch summaries and progress (None: silent). On a terminal a progress bar; else
            a progress line every ``progress_every`` seconds.

    Raises:
        RecipeError: ``train.device`` names a device this machine does not have.
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
        self.checkpoint_dir = Path(checkpoint_dir)
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if isinstance(model, ExternalModel) and self.world_size > 1:
            raise ValueError(f"{type(model).__name__} is fitted by its own library in one process: run it without torchrun")
        self.device = resolve_device(self.config.device, self.world_size)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        model.to(self.device)
        self.runner: nn.Module = _Call(model)
        if self.world_size > 1:
            self.runner = self._parallel(self.runner)
        self.optimizer = optimizer or build_optimizer(self.config, model)
        self.params = [p for p in model.parameters() if p.requires_grad]  # shared Parameters once
        self.state = TrainState(lr=self.config.first_epoch_lr or self.config.lr)
        self.stop = StopRequest(self.world_size, self.device)
        self.output = Output(console, task.unit, every=progress_every, rank=self.rank)
        self.checkpoints = Checkpoints(self.checkpoint_dir, rank=self.rank, world_size=self.world_size, sharded=self._sharded())
        self.metadata = task.checkpoint_metadata(data)  # written into every model checkpoint
        self.evaluator = _evaluator(task)

    def _parallel(self, runner: nn.Module) -> nn.Module:
        if self.config.parallel == "fsdp":
            from tying.distributed import fully_shard_tied

            fully_shard_tied(runner)  # in place: every tie group in one unit
            return runner
        return nn.parallel.DistributedDataParallel(runner)

    def _sharded(self) -> bool:
        return self.config.parallel == "fsdp" and self.world_size > 1

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
        if resume and self.checkpoints.can_resume():
            self._restore()
        with self.stop.catching():
            while self.state.epoch < self.config.epochs:
                self._run_epoch()
                if self.state.epoch < self.config.epochs and self.stop.now():  # asked between batches' checks
                    raise Interrupted(f"interrupted after epoch {self.state.epoch}; saved a resumable point in {str(self.checkpoint_dir)!r}")
        last, best = self.state.epoch, self.state.best_epoch
        result = TrainResult(self.task.unit, list(self.state.history), best, test_epoch=last)
        result.test = result.test_last = self._evaluate("test", last)  # the model holds the last epoch's weights
        if best is not None:
            result.valid = {k[6:]: v for k, v in self.state.history[best - 1].items() if k.startswith("valid_")}
            if best != last:
                if self._sharded():
                    self.output.log(f"FSDP: the test data scores the last epoch's model, not epoch {best}'s")
                else:
                    self.checkpoints.load(self.model, self.checkpoint_dir / BEST_FILE)
                    result.test_epoch = best
                    result.test = self._evaluate("test", best)
        if result.test is not None:
            self.output.log(f"test {self._shown(result.test)} (model of epoch {result.test_epoch})")
            if result.test_epoch != last and result.test_last is not None:
                self.output.log(f"test {self._shown(result.test_last)} (model of the last epoch, {last})")
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
        valid = self._evaluate("valid", epoch)
        assert valid is not None
        first = self.task.metrics[0]
        improved = self.state.best_value is None or first.better(valid[first.name], self.state.best_value)
        unit = self.task.unit
        # The lr of the epoch's last step (the same as its first unless the schedule is per step).
        metrics: dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss}
        metrics |= {f"train_{k}": v for k, v in self.task.train_metrics(train_loss).items()}
        metrics |= {f"valid_{k}": v for k, v in valid.items()}
        metrics |= {f"train_{unit}": count, f"{unit}_per_s": count / train_s, "train_s": train_s}
        if (peak := peak_memory_mib()) is not None:
            metrics["peak_rss_mib"] = peak
        if improved:
            self.state.best_value, self.state.best_epoch = valid[first.name], epoch
        self.state.lr = next_lr(self.config, self.state.lr, epoch=epoch, improved=improved)
        self.state.epoch, self.state.step, self.state.partial, self.state.carry = epoch, 0, {}, None
        # Before checkpointing: I/O speed is not training speed. An epoch resumed after an
        # interrupt counts its training time before the interrupt, not the time spent stopped.
        metrics["wall_s"] = train_s + time.perf_counter() - eval_start
        self.state.history.append(metrics)
        self._checkpoint(f"model-epoch{epoch:03d}.safetensors", best=improved)
        self.output.log(
            f"epoch {epoch:3d} | lr {metrics['lr']:g} | train loss {train_loss:.3f} | "
            f"valid {self._shown(valid)}{' (best)' if improved else ''} | "
            f"{metrics[f'{unit}_per_s']:,.0f} {unit}/s | {metrics['wall_s']:.1f} s"
        )

    def _train_epoch(self, epoch: int) -> tuple[float, int, float]:
        """Train the batches of ``epoch`` (from an interrupted position if there is one); returns
        the count-weighted mean loss, the items counted, and the training seconds."""
        self.model.train()
        if isinstance(self.model, ExternalModel):
            start = time.perf_counter()
            loss, count = self.model.fit_epoch(self.data, epoch)
            return float(loss), int(count), time.perf_counter() - start
        batches = self.task.train_batches(self.data, epoch)
        n = min(len(batches), self.config.max_batches) if self.config.max_batches else len(batches)
        # A capped epoch continues where the previous one stopped (wrapping round), so a capped
        # run still sees all the batches rather than its first n again and again.
        first = (epoch - 1) * n % len(batches)
        done, carry = self.state.step, self.state.carry
        total, count = self.state.partial.get("loss_sum", 0.0), int(self.state.partial.get("count", 0))
        before = self.state.partial.get("train_s", 0.0)
        start = time.perf_counter()
        with self.output.progress(f"epoch {epoch}", n, done) as advance:
            for k in range(done, n):
                batch = batches[(first + k) % len(batches)]
                if self.world_size > 1:
                    batch = self.task.split_batch(batch, self.rank, self.world_size)
                batch = to_device(batch, self.device)
                out: StepOutput = self.runner(self.task.step, batch, carry)
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if self.config.clip > 0:
                    nn.utils.clip_grad_norm_(self.params, self.config.clip)
                lr = step_lr(self.config, (epoch - 1) * n + k + 1, self.config.epochs * n)  # capped or not, epochs have n steps each
                if lr is not None:
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                self.optimizer.step()
                total += out.loss.item() * out.count
                count += out.count
                carry = out.carry
                advance(total / count, count / (before + time.perf_counter() - start))
                if self.stop.now():
                    self._save_interrupted(epoch, k + 1, total, count, before + time.perf_counter() - start, carry)
        train_s = before + time.perf_counter() - start
        if self.world_size > 1:  # every rank's (loss x count) and count: the global batches'
            sums = torch.tensor([total, float(count)], dtype=torch.float64, device=self.device)
            dist.all_reduce(sums)
            total, count = sums[0].item(), int(sums[1].item())
        return total / count, count, train_s

    def _evaluate(self, split: str, epoch: int) -> dict[str, float] | None:
        """The task's metrics on ``split`` for the model of ``epoch``, or None when the data has no such split."""
        self.model.eval()
        with torch.no_grad():
            runner = self.runner if self._sharded() else _Call(self.model)
            return runner(self.evaluator(epoch), self.data, split)

    # ------------------------------------------------------------------ checkpoints

    def _save_interrupted(self, epoch: int, step: int, total: float, count: int, train_s: float, carry: Any) -> None:
        self.state.step, self.state.carry = step, carry
        self.state.partial = {"loss_sum": total, "count": count, "train_s": train_s}
        self._checkpoint(f"model-epoch{epoch:03d}-step{step:06d}.safetensors", best=False)
        raise Interrupted(
            f"interrupted in epoch {epoch} after batch {step}; saved a resumable point in {str(self.checkpoint_dir)!r}"
        )

    def _checkpoint(self, model_file: str, *, best: bool) -> None:
        metadata = {**self.metadata, "epoch": str(self.state.epoch), "step": str(self.state.step)}
        self.checkpoints.save(
            self.model, model_file, self.state, best=best, metadata=metadata, optimizer=self._optimizer_state(),
            settings=settings_of(self.task.config),
        )  # fmt: skip

    def _optimizer_state(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        # FSDP shards the optimizer state with the parameters: rank 0 holds a part only. Runs
        # under FSDP are not resumable (see Checkpoints.load), so the state file keeps the schedule alone.
        return {"state": {}, "param_groups": state["param_groups"]} if self._sharded() else state

    def _restore(self) -> None:
        saved = self.checkpoints.read(self.task.config)
        assert saved.state.model_file is not None  # checked by read
        self.checkpoints.load(self.model, self.checkpoint_dir / saved.state.model_file)
        self.state = saved.restore(self.optimizer)
        self.state.carry = to_device(self.state.carry, self.device)
        where = f"batch {self.state.step} of epoch {self.state.epoch + 1}" if self.state.step else f"epoch {self.state.epoch}"
        self.output.log(f"resumed from {str(self.checkpoint_dir / saved.state.model_file)!r} after {where}")
