"""A ``save_pretrained`` folder as one file for :func:`tying.load`: its ``model.safetensors``, or,
for a sharded folder (``model.safetensors.index.json``), its shards gathered into one temporary
file first (so the load stays all or nothing)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from tying.errors import CheckpointError

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def _weight_map(folder: Path) -> dict[str, str]:
    index = folder / INDEX
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{str(index)!r} is not a safetensors index (no readable 'weight_map': {exc})") from None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{str(index)!r}: 'weight_map' must map tensor names to shard files")
    return weight_map


@contextmanager
def as_one_file(path: Path) -> Iterator[Path]:
    """``path`` itself when it is a file; for a folder the single file or the gathered shards."""
    if not path.is_dir():
        yield path
        return
    if (path / SINGLE).is_file():
        yield path / SINGLE
        return
    if not (path / INDEX).is_file():
        raise CheckpointError(f"{str(path)!r} is not a regular file, nor a save_pretrained folder (it holds no {SINGLE} or {INDEX})")
    tensors = {}
    for shard in sorted(set(_weight_map(path).values())):
        if not (path / shard).is_file():
            raise CheckpointError(f"{str(path / INDEX)!r} names the shard {shard!r}, which is not in the folder")
        with safe_open(str(path / shard), framework="pt", device="cpu") as f:
            tensors.update({name: f.get_tensor(name) for name in f.keys()})
    with tempfile.TemporaryDirectory() as scratch:
        gathered = Path(scratch) / SINGLE
        save_file(tensors, str(gathered), {"format": "pt"})
        yield gathered
