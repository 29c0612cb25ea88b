"""The training engine and its components: the task protocol, settings, the loop, objectives of
language models, and training-state checkpoints."""

from tying.training.config import LRSchedule, Table, TrainConfig, build_optimizer, next_lr, step_lr
from tying.training.losses import (
    LossConfig,
    LossFn,
    augmented_kl,
    build_loss,
    fused_lm_loss,
    lm_loss,
    perplexity,
    projection_penalty,
    real_loss,
    with_projection_penalty,
)
from tying.training.state import SavedTrainState, TrainState, read_train_state, save_train_state
from tying.training.task import Metric, ReportFigure, StepOutput, Task, get_task, register_task, task_names
from tying.training.trainer import Interrupted, Trainer, TrainResult

__all__ = [
    "LRSchedule",
    "Table",
    "TrainConfig",
    "build_optimizer",
    "next_lr",
    "step_lr",
    "LossFn",
    "lm_loss",
    "fused_lm_loss",
    "LossConfig",
    "build_loss",
    "augmented_kl",
    "real_loss",
    "projection_penalty",
    "with_projection_penalty",
    "perplexity",
    "TrainState",
    "SavedTrainState",
    "save_train_state",
    "read_train_state",
    "Metric",
    "ReportFigure",
    "StepOutput",
    "Task",
    "get_task",
    "register_task",
    "task_names",
    "Interrupted",
    "Trainer",
    "TrainResult",
]
