"""Language-model training components: config, objectives, the loop, training-state checkpoints
and reports comparing runs."""

from tying.training.config import LRSchedule, TrainConfig, next_lr
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
from tying.training.report import Run, comparison_markdown, comparison_table, plot_valid_ppl
from tying.training.state import SavedTrainState, TrainState, read_train_state, save_train_state
from tying.training.trainer import Trainer, TrainResult, detach_state

__all__ = [
    "LRSchedule",
    "TrainConfig",
    "next_lr",
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
    "Trainer",
    "TrainResult",
    "detach_state",
    "Run",
    "comparison_table",
    "comparison_markdown",
    "plot_valid_ppl",
]
