"""The training engine, shared by every task and specific to none: the task protocol, settings,
the loop, and training-state checkpoints."""

from tying._moved import moved_attribute
from tying.training.external import ExternalModel
from tying.training.config import LRSchedule, Table, TrainConfig, build_optimizer, next_lr, step_lr
from tying.training.state import SavedTrainState, TrainState, read_train_state, save_train_state
from tying.training.tables import build_config, config_table
from tying.training.registry import get_task, register_task, task_names
from tying.training.task import Metric, ReportFigure, StepOutput, Task
from tying.training.trainer import Interrupted, Trainer, TrainResult

__all__ = [
    "LRSchedule",
    "Table",
    "TrainConfig",
    "build_optimizer",
    "next_lr",
    "step_lr",
    "config_table",
    "build_config",
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
    "ExternalModel",
    "TrainResult",
]


def __getattr__(name: str) -> object:
    return moved_attribute(__name__, name)
