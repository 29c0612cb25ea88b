"""Models that use weight tying, each readable top to bottom in one file."""

from tying.models.autoencoder import AutoEncoder, AutoEncoderConfig
from tying.models.lstm import LSTMConfig, LSTMLanguageModel, LSTMState
from tying.models.transformer import TransformerConfig, TransformerLanguageModel
from tying.models.translation import TieMode, TranslationConfig, TranslationTransformer
from tying.models.wide_deep import Ratings, WideDeep, WideDeepConfig

__all__ = [
    "AutoEncoder",
    "AutoEncoderConfig",
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTMState",
    "TransformerConfig",
    "TransformerLanguageModel",
    "TieMode",
    "TranslationConfig",
    "TranslationTransformer",
    "Ratings",
    "WideDeep",
    "WideDeepConfig",
]
