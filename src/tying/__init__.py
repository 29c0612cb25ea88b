"""tying: weight tying for PyTorch as a declared specification.

A tie is a directional record ``source -> target`` (optionally through a transform) that
:mod:`tying` keeps on the model, applies, verifies, writes into safetensors checkpoints and
re-applies after anything that breaks object identity (meta-device materialisation,
``load_state_dict(assign=True)``, ...). See ``docs/ties.md``.

Weight tying shares one matrix between an LM's input embedding and output classifier
(Press & Wolf 2017, arXiv 1608.05859; Inan et al. 2017, arXiv 1611.01462), between a
translation model's source/target embeddings and its output layer, across layers (ALBERT;
:func:`share_layers` for the strategies of Takase & Kiyono 2021, arXiv 2104.06022), or
transposed between an autoencoder's encoder and decoder.
"""

from tying import _moved
from tying.checkpoint import CheckpointInfo, LoadResult, load, read_checkpoint, save
from tying.core import retie, tie, tie_transposed, untie, weight_norm
from tying.discovery import Summary, SummaryRow, TieGroup, TieMember, find_ties, summary
from tying.errors import CheckpointError, TieError, TieVerificationError
from tying.materialize import empty_parameters, materialize
from tying.optim import count_parameters, param_groups, unique_parameters
from tying.resize import ResizedParameter, VocabResize, resize_vocab
from tying.sharing import LayerSharing, layer_assignment, layer_sharing, share_layers
from tying.spec import Tie, TieSpec, get_spec
from tying.verification import BrokenTie, TieReport, verify
from tying.transforms import Transpose

__version__ = "0.1.0"

_moved.install()  # old module paths of what moved into tying.tasks, for one release

__all__ = [
    "BrokenTie",
    "CheckpointError",
    "CheckpointInfo",
    "LayerSharing",
    "LoadResult",
    "ResizedParameter",
    "Summary",
    "SummaryRow",
    "Tie",
    "TieError",
    "TieGroup",
    "TieMember",
    "TieReport",
    "TieSpec",
    "TieVerificationError",
    "Transpose",
    "VocabResize",
    "count_parameters",
    "empty_parameters",
    "find_ties",
    "get_spec",
    "layer_assignment",
    "layer_sharing",
    "load",
    "materialize",
    "param_groups",
    "read_checkpoint",
    "resize_vocab",
    "retie",
    "save",
    "share_layers",
    "summary",
    "tie",
    "tie_transposed",
    "unique_parameters",
    "untie",
    "verify",
    "weight_norm",
]
