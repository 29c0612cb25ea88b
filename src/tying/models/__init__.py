"""Models that use weight tying, each readable top to bottom in one file."""

from tying.models.lstm import LSTMConfig, LSTMLanguageModel, LSTMState

__all__ = ["LSTMConfig", "LSTMLanguageModel", "LSTMState"]
