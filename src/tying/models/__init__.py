"""Models that use weight tying, each readable top to bottom in one file."""

from tying.models.autoencoder import AutoEncoder, AutoEncoderConfig
from tying.models.cdef import CDEF, CDEFConfig
from tying.models.lstm import LSTMConfig, LSTMLanguageModel, LSTMState
from tying.models.transformer import TransformerConfig, TransformerLanguageModel
from tying.models.translation import TieMode, TranslationConfig, TranslationTransformer

__all__ = [
    "AutoEncoder",
    "AutoEncoderConfig",
    "CDEF",
    "CDEFConfig",
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTMState",
    "TransformerConfig",
    "TransformerLanguageModel",
    "TieMode",
    "TranslationConfig",
    "TranslationTransformer",
]
