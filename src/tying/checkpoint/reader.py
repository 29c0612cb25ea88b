"""Reading a checkpoint's header: its tensors, its tie spec and aliases, validated, without
loading tensor data or unpickling anything."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from tying.checkpoint.wrapped import check_entry
from tying.errors import CheckpointError
from tying.spec import TieSpec, state_key_pairs

#: The header metadata key holding the tie spec and aliases.
META_KEY = "tying"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass
class CheckpointInfo:
    """What a safetensors file holds, read from its header only (see :func:`read_checkpoint`)."""

    path: Path
    file_size: int
    header_size: int
    tensors: list[TensorInfo]
    #: ``state_dict`` keys not stored, mapped to the stored key holding their data.
    aliases: dict[str, str]
    #: The declared tie spec (files written by :func:`tying.save`), else ``None``.
    spec: TieSpec | None
    #: ``"tying"``, ``"safetensors-save_model"`` (``{dropped: kept}`` metadata) or ``"plain"``.
    format: str
    metadata: dict[str, str] = field(default_factory=dict)
    #: Tensor subclasses (quantized tensors) stored as their inner tensors, by ``state_dict`` key:
    #: ``{"class", "inner", "context", "shape"}`` (:mod:`tying.checkpoint.wrapped`).
    wrapped: dict[str, dict[str, object]] = field(default_factory=dict)

    def groups(self) -> list[list[str]]:
        """Stored key first, then the keys reading it, in file order."""
        out: dict[str, list[str]] = {}
        for dropped, kept in self.aliases.items():
            out.setdefault(kept, [kept]).append(dropped)
        return [out[t.name] for t in self.tensors if t.name in out]


# safetensors dtypes that torch reads one element per element. The sub-byte F4/F6 types pack
# several values into one torch element, so their torch shapes differ from the header's.
TORCH_DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U64": torch.uint64,
        "U32": torch.uint32,
        "U16": torch.uint16,
        "U8": torch.uint8,
        "BOOL": torch.bool,
        "C64": torch.complex64,
        "F8_E4M3": torch.float8_e4m3fn,
        "F8_E5M2": torch.float8_e5m2,
        "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
        "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
        "F8_E8M0": getattr(torch, "float8_e8m0fnu", None),  # torch >= 2.7
    }.items()
    if dtype is not None
}
_DTYPE_BYTES = {name: dtype.itemsize for name, dtype in TORCH_DTYPES.items()}


def _sniff(path: Path, data: bytes) -> None:
    """Refuse zip and pickle files by their signature. ``data`` is the file's first 9 bytes.

    A safetensors header starts with ``{`` right after its 8-byte length, and that length can look
    like a signature (every header of 128 + 256k bytes begins with byte 0x80, as a pickle does), so
    a file with ``{`` there is left to the safetensors parser, which never unpickles either."""
    if data[8:9] == b"{":
        return
    if data.startswith(b"PK\x03\x04"):
        raise CheckpointError(
            f"{str(path)!r} is a zip archive (a torch.save checkpoint, which holds pickle); tying never unpickles. "
            "Convert it once, in a trusted environment, with tying.save(model, 'file.safetensors')"
        )
    if data[:1] == b"\x80":
        raise CheckpointError(f"{str(path)!r} is a pickle file; tying never unpickles. Convert it to safetensors in a trusted environment")



def _check_size(path: Path) -> tuple[int, int]:
    """``(file size, header size)`` of a file that may be safetensors; refuses anything else by name."""
    if not path.is_file():  # a folder or a FIFO (which would block a reader) is no checkpoint either
        message = f"{str(path)!r} is not a regular file" if path.exists() else f"no such checkpoint file: {str(path)!r}"
        raise CheckpointError(message)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise CheckpointError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    _sniff(path, head)
    if size < 8:
        raise CheckpointError(f"{str(path)!r} is not a safetensors file: {size} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(head[:8], "little")
    if n > min(_MAX_HEADER, size - 8):
        raise CheckpointError(
            f"{str(path)!r} is not a valid safetensors file: it declares a {n:,}-byte header but the file has {size:,} bytes"
        )
    return size, n


def _read_header(path: Path) -> tuple[dict[str, str], list[TensorInfo]]:
    """The header's metadata and tensors, as safetensors parses them."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            names = list(f.keys())
            tensors = []
            for name in names:
                sl = f.get_slice(name)
                dtype, shape = sl.get_dtype(), tuple(sl.get_shape())
                numel = 1
                for d in shape:
                    numel *= d
                tensors.append(TensorInfo(name, dtype, shape, numel * _DTYPE_BYTES.get(dtype, 0)))
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types from Rust
        raise CheckpointError(f"{str(path)!r} is not a valid safetensors file: {exc}") from None
    return meta, tensors


def _tying_metadata(path: Path, text: str, stored: set[str]) -> tuple[TieSpec, dict[str, str], dict[str, dict[str, object]]]:
    """The spec, aliases and wrapped tensors of the header's ``"tying"`` entry."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        spec = TieSpec.from_dict({k: v for k, v in data.items() if k not in ("aliases", "wrapped")})
        aliases = data.get("aliases", {})
        if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
            raise ValueError("'aliases' must map strings to strings")
        wrapped = data.get("wrapped", {})
        if not isinstance(wrapped, dict):
            raise ValueError("'wrapped' must be an object")
        for key, entry in wrapped.items():
            check_entry(key, entry, stored)
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise CheckpointError(f"{str(path)!r}: malformed tying metadata: {exc}") from None
    return spec, aliases, wrapped


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read and validate the header of a safetensors file (ours, ``safetensors.torch.save_model``'s
    or a plain state dict) without loading tensor data. Raises :class:`CheckpointError` naming the
    file for anything that is not a well-formed safetensors file (pickle included: never run)."""
    path = Path(path)
    size, n = _check_size(path)
    meta, tensors = _read_header(path)
    spec: TieSpec | None = None
    stored = {t.name for t in tensors}
    wrapped: dict[str, dict[str, object]] = {}
    if META_KEY in meta:
        spec, aliases, wrapped = _tying_metadata(path, meta[META_KEY], stored)
        stored |= set(wrapped)  # a quantized tensor is stored, as its inner tensors
        fmt = "tying"
    else:
        aliases = {k: v for k, v in meta.items() if k not in stored and v in stored}
        fmt = "safetensors-save_model" if aliases else "plain"
    for dropped, kept in aliases.items():
        if kept not in stored:
            raise CheckpointError(f"{str(path)!r}: alias {dropped!r} refers to {kept!r}, which the file does not contain")
        if dropped in stored:
            raise CheckpointError(f"{str(path)!r}: {dropped!r} is both stored and declared an alias of {kept!r}")
    file_spec = spec or TieSpec()
    for t in file_spec.ties:
        src_key = state_key_pairs(file_spec, t)[0][0]
        if src_key not in stored and src_key not in aliases:
            raise CheckpointError(f"{str(path)!r}: the tie spec's source {t.source!r} (of {t.describe()!r}) is not in the file")
    aliases = {**implied_aliases(file_spec, stored, aliases), **aliases}
    return CheckpointInfo(path, size, n, tensors, aliases, spec, fmt, meta, wrapped)


def implied_aliases(spec: TieSpec, stored: set[str], aliases: dict[str, str]) -> dict[str, str]:
    """``{target key: stored key}`` for each tie target key of ``spec`` the file does not store:
    what its source's key is stored as."""
    out = {}
    for t in spec.ties:
        for src, tgt in state_key_pairs(spec, t):
            where = src if src in stored else aliases.get(src)
            if tgt not in stored and where is not None:
                out[tgt] = where
    return out



_ST_DTYPES = {dtype: name for name, dtype in TORCH_DTYPES.items()}


def st_dtype(dtype: torch.dtype) -> str:
    """The safetensors name of ``dtype`` (its torch name if safetensors has none)."""
    return _ST_DTYPES.get(dtype, str(dtype))
