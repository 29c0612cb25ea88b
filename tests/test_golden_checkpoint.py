"""The exact bytes of checkpoints of representative tied models, pinned: a refactor of the
spec, the transforms or the writer must leave every existing file format byte for byte as it was.

Values are set from ``torch.arange`` rather than drawn from a seeded generator, so the digests
follow the file format alone, not torch's random number generators. safetensors writes its
header's ``__metadata__`` entries in a random order (a Rust ``HashMap``), so the digest covers the
file with its JSON header in one canonical key order: the header's length, every header entry
(the ``"tying"`` string byte for byte) and the tensor bytes. On a mismatch the tying header is
compared first, so the failure shows what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import tying


def _fill(model: nn.Module) -> nn.Module:
    """Deterministic, distinct values in every parameter and buffer (each tensor object once)."""
    seen: set[int] = set()
    with torch.no_grad():
        for i, t in enumerate([*model.parameters(), *model.buffers()]):
            if id(t) not in seen and t.is_floating_point():
                seen.add(id(t))
                t.copy_(torch.sin(torch.arange(t.numel(), dtype=torch.float64) * 0.37 + i).reshape(t.shape))
    return model


class _LM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.head = nn.Linear(4, 11)


def plain_tie() -> nn.Module:
    m = _fill(_LM())
    tying.tie(m, "embed.weight", "head.weight")
    return m


def transposed_tie() -> nn.Module:
    m = _fill(nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 6)))
    tying.tie_transposed(m, "0.weight", "2.weight")
    return m


def weight_normalised_tie() -> nn.Module:
    m = nn.Module()
    m.embed, m.head, m.dec = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False), nn.Linear(10, 4, bias=False)
    _fill(m)
    tying.tie(m, "embed.weight", "head.weight")
    tying.tie_transposed(m, "embed.weight", "dec.weight")
    tying.weight_norm(m, "embed.weight", dim=0)
    return m


def shared_layers() -> nn.Module:
    m = nn.Module()
    m.blocks = nn.ModuleList(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)) for _ in range(4))
    _fill(m)
    tying.share_layers(m, "blocks", unique=2, strategy="cycle_rev", share_norms=False)
    return m


def three_way_and_undeclared() -> nn.Module:
    m = nn.Module()
    m.src, m.tgt, m.out = nn.Embedding(7, 2), nn.Embedding(7, 2), nn.Linear(2, 7)
    m.a, m.b = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    _fill(m)
    tying.tie(m, "src.weight", "tgt.weight", "out.weight")
    m.b.weight = m.a.weight  # undeclared sharing: recorded as an alias in the header
    return m


# name -> (builder, :func:`_digest` of its file, the header's "tying" entry)
GOLDEN: dict[str, tuple[Callable[[], nn.Module], str, str]] = {
    "plain": (
        plain_tie,
        "988077e910c4e5678a66d6a7732ee8eed5682d2b8a76157ae86154d3d2f5d510",
        '{"aliases": {}, "parametrizations": {}, "ties": [{"source": "embed.weight", "target": "head.weight", "transform": null}], "version": 2}',
    ),
    "transposed": (
        transposed_tie,
        "1e7a0bdb3920d715328698c68053ae967b6b85516f408af8c2b0dcc7df8574ea",
        '{"aliases": {}, "parametrizations": {}, "ties": [{"source": "0.weight", "target": "2.weight", "transform": "transpose"}], "version": 2}',
    ),
    "weight_norm": (
        weight_normalised_tie,
        "09a1d71589625f03357d056048457771cfc68b0e2f9969e1e0d7145749bcba2a",
        '{"aliases": {}, "parametrizations": {"embed.weight": {"dim": 0, "kind": "weight_norm"}}, "ties": [{"source": "embed.weight", "target": "head.weight", "transform": null}, {"source": "embed.weight", "target": "dec.weight", "transform": "transpose"}], "version": 2}',
    ),
    "shared_layers": (
        shared_layers,
        "b026da051603cad7b364f4aa84fa0d7c028ca500a2bc6c59bc593ac55a8e73b1",
        '{"aliases": {}, "parametrizations": {}, "ties": [{"source": "blocks.1.0.weight", "target": "blocks.2.0.weight", "transform": null}, {"source": "blocks.1.0.bias", "target": "blocks.2.0.bias", "transform": null}, {"source": "blocks.0.0.weight", "target": "blocks.3.0.weight", "transform": null}, {"source": "blocks.0.0.bias", "target": "blocks.3.0.bias", "transform": null}], "version": 2}',
    ),
    "three_way_and_undeclared": (
        three_way_and_undeclared,
        "9cd6cbb4c06a1cd1b61839fff236c30ab49f88b41347b38664579a77f9d07dd7",
        '{"aliases": {"b.weight": "a.weight"}, "parametrizations": {}, "ties": [{"source": "src.weight", "target": "tgt.weight", "transform": null}, {"source": "src.weight", "target": "out.weight", "transform": null}], "version": 2}',
    ),
}


def _tying_header(path: Path) -> str:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return str(json.loads(raw[8 : 8 + n])["__metadata__"]["tying"])


def _digest(path: Path) -> str:
    """sha256 of the file with its header's keys in sorted order (all else as written)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw[:8] + header + raw[8 + n :]).hexdigest()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_checkpoint_bytes_are_unchanged(name: str, tmp_path: Path) -> None:
    build, digest, header = GOLDEN[name]
    path = tying.save(build(), tmp_path / f"{name}.safetensors")
    assert _tying_header(path) == header
    assert _digest(path) == digest


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_checkpoint_loads_back(name: str, tmp_path: Path) -> None:
    build = GOLDEN[name][0]
    model = build()
    path = tying.save(model, tmp_path / f"{name}.safetensors")
    fresh = build()
    tying.load(fresh, path)
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
