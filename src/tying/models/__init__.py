"""Models that use weight tying, each readable top to bottom in one file."""

from tying.models.autoencoder import AutoEncoder, AutoEncoderConfig
from tying.models.cdef import CDEF, CDEFConfig
from tying.models.deqlinear import DEQLinear, DEQLinearConfig
from tying.models.lstm import LSTMConfig, LSTMLanguageModel, LSTMState
from tying.models.mavnet import MAVNet, MAVNetConfig
from tying.models.sgns import SGNSConfig, SkipGram, reflection_signs
from tying.models.transformer import TransformerConfig, TransformerLanguageModel
from tying.models.trellis import LevelHistory, TrellisConfig, TrellisLanguageModel, TrellisLevel, TrellisState
from tying.models.translation import TieMode, TranslationConfig, TranslationTransformer
from tying.models.unet import UNet, UNetConfig
from tying.models.wide_deep import Ratings, WideDeep, WideDeepConfig

__all__ = [
    "AutoEncoder",
    "AutoEncoderConfig",
    "CDEF",
    "CDEFConfig",
    "DEQLinear",
    "DEQLinearConfig",
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTMState",
    "MAVNet",
    "MAVNetConfig",
    "SGNSConfig",
    "SkipGram",
    "reflection_signs",
    "TransformerConfig",
    "TransformerLanguageModel",
    "TieMode",
    "LevelHistory",
    "TrellisConfig",
    "TrellisLanguageModel",
    "TrellisLevel",
    "TrellisState",
    "TranslationConfig",
    "TranslationTransformer",
    "UNet",
    "UNetConfig",
    "Ratings",
    "WideDeep",
    "WideDeepConfig",
]
