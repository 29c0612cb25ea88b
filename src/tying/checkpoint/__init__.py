"""Tie-aware safetensors checkpoints.

File layout: a standard safetensors file (readable by any safetensors tool) in which each group
of aliased ``state_dict`` entries is stored once. The header metadata holds, under the key
``"tying"``, versioned JSON::

    {"version": 2,
     "ties": [{"source": "encoder.weight", "target": "decoder.weight", "transform": null}, ...],
              # a transform with parameters adds "params": {...} (tying.transforms)
     "parametrizations": {"encoder.weight": {"kind": "weight_norm", "dim": 0}},   # if any
     "aliases": {"lm_head.weight": "wte.weight", ...}}   # state_dict key not stored -> key stored

``ties`` and ``parametrizations`` are the model's declared spec (:class:`tying.spec.TieSpec`);
``aliases`` lists the deduplicated ``state_dict`` keys the declared ties do not imply (sharing
nobody declared); :func:`read_checkpoint` adds the implied ones back, so
``CheckpointInfo.aliases`` covers every deduplicated key. Version 1 files (every alias listed,
no parametrizations) read the same. Guarantees: the file is written in a temporary
folder beside it, fsynced and renamed, so a crash never leaves a partial file under the final
name (the next save to that path removes what a killed one left); its size is the unique tensor
bytes plus the header; loading never unpickles anything and changes nothing in the model unless
every check passes.

The package: :mod:`~tying.checkpoint.writer` (:func:`save`), :mod:`~tying.checkpoint.reader`
(:func:`read_checkpoint`), :mod:`~tying.checkpoint.plan` (what :func:`load` will do, decided
without changing anything) and :mod:`~tying.checkpoint.loader` (:func:`load`).
"""

from tying.checkpoint.loader import LoadResult, load
from tying.checkpoint.reader import CheckpointInfo, TensorInfo, read_checkpoint
from tying.checkpoint.writer import save, save_state_dict

__all__ = ["save", "save_state_dict", "load", "read_checkpoint", "CheckpointInfo", "TensorInfo", "LoadResult"]
