"""Hyper-parameters of language-model training."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["TrainConfig", "LRSchedule", "next_lr"]

#: ``"plateau"``: divide the learning rate by ``lr_decay`` after every epoch whose validation
#: perplexity is not a new best (pytorch/examples ``word_language_model``).
#: ``"step"``: divide it after every epoch from ``decay_start`` on (Zaremba et al. 2014: lr 1,
#: halved after each epoch from the 4th (small model), i.e. ``lr_decay=2, decay_start=4``).
LRSchedule = Literal["plateau", "step"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :class:`tying.training.Trainer`. Defaults follow pytorch/examples
    ``word_language_model`` (plain SGD at lr 20, gradient norm clipped to 0.25, lr / 4 on a
    validation plateau, batch 20, 35 BPTT steps).

    Attributes:
        epochs: passes over the training data (an epoch is ``max_batches`` windows if that is set).
        batch_size: parallel streams the training data is cut into (:func:`tying.data.batchify`).
        eval_batch_size: the same for validation and test data.
        bptt: truncated back-propagation length, in tokens.
        lr: initial SGD learning rate.
        momentum, weight_decay: passed to ``torch.optim.SGD``.
        clip: maximum global gradient L2 norm (``clip_grad_norm_``); 0 disables clipping.
        lr_schedule, lr_decay, decay_start: see :data:`LRSchedule`.
        max_batches: cap on training windows per epoch (a quick run on a large corpus); None: all.
            Capped epochs follow on from each other through the stream, wrapping round at its end.
        seed: ``torch.manual_seed`` at the start of training (dropout masks); the same seed, model
            initialisation and data give bit-identical losses.
    """

    epochs: int = 6
    batch_size: int = 20
    eval_batch_size: int = 10
    bptt: int = 35
    lr: float = 20.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip: float = 0.25
    lr_schedule: LRSchedule = "plateau"
    lr_decay: float = 4.0
    decay_start: int = 4
    max_batches: int | None = None
    seed: int = 1111

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("plateau", "step"):
            raise ValueError(f"lr_schedule must be 'plateau' or 'step', got {self.lr_schedule!r}")
        if self.lr_decay < 1:
            raise ValueError(f"lr_decay divides the learning rate and must be >= 1, got {self.lr_decay}")
        if self.max_batches is not None and self.max_batches < 1:
            raise ValueError(f"max_batches must be None or >= 1, got {self.max_batches}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def next_lr(config: TrainConfig, lr: float, *, epoch: int, improved: bool) -> float:
    """Learning rate for the epoch after ``epoch`` (1-based, just finished), given whether its
    validation perplexity was a new best."""
    decay = not improved if config.lr_schedule == "plateau" else epoch >= config.decay_start
    return lr / config.lr_decay if decay else lr
