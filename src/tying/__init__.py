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

The public API is what this module exports (and :mod:`tying.hf`, :mod:`tying.distributed`,
:mod:`tying.nn`, :mod:`tying.functional`). Convention: a submodule's ``__all__`` lists only
public names; its other names without a leading underscore are internal helpers shared between
tying's own modules, and an underscore name is never imported from another module.
"""

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from tying._moved import install as _install_moved_paths
from tying.accounting import Summary, SummaryRow, summary
from tying.checkpoint import CheckpointInfo, LoadResult, load, read_checkpoint, save
from tying.core import retie, tie, tie_reflected, tie_transposed, untie, weight_norm
from tying.discovery import TieGroup, TieMember, find_ties
from tying.errors import CheckpointError, TieError, TieVerificationError
from tying.materialize import empty_parameters, materialize
from tying.optim import count_parameters, param_groups, unique_parameters
from tying.resize import ResizedParameter, VocabResize, resize_vocab
from tying.sharing import LayerSharing, layer_assignment, layer_sharing, share_layers
from tying.spec import Tie, TieSpec, get_spec
from tying.stateless import functional_call
from tying.verification import BrokenTie, TieReport, verify
from tying.transforms import Reflect, Transpose

__version__ = "0.1.0"

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute of tying

    def __getattr__(name: str) -> ModuleType:
        # ``tying.hf`` after a bare ``import tying``, as when the core imported it, which it no
        # longer does (:mod:`tying.integrations`).
        if name == "hf":
            return importlib.import_module("tying.hf")
        raise AttributeError(f"module 'tying' has no attribute {name!r}")

_install_moved_paths()  # old module paths of what moved into tying.tasks, for one release

__all__ = [
    "BrokenTie",
    "CheckpointError",
    "CheckpointInfo",
    "LayerSharing",
    "LoadResult",
    "Reflect",
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
    "functional_call",
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
    "tie_reflected",
    "tie_transposed",
    "unique_parameters",
    "untie",
    "verify",
    "weight_norm",
]
