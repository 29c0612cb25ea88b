"""Models that use weight tying, each readable top to bottom in one file."""

from tying.models.autoencoder import AutoEncoder, AutoEncoderConfig
from tying.models.lstm import LSTMConfig, LSTMLanguageModel, LSTMState
from tying.models.sgns import SGNSConfig, SkipGram, reflection_signs
from tying.models.transformer import TransformerConfig, TransformerLanguageModel
from tying.models.translation import TieMode, TranslationConfig, TranslationTransformer

__all__ = [
    "AutoEncoder",
    "AutoEncoderConfig",
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTMState",
    "SGNSConfig",
    "SkipGram",
    "reflection_signs",
    "TransformerConfig",
    "TransformerLanguageModel",
    "TieMode",
    "TranslationConfig",
    "TranslationTransformer",
]
