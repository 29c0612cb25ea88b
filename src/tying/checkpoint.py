"""Tie-aware safetensors checkpoints.

File layout: a standard safetensors file (readable by any safetensors tool) in which each group
of aliased ``state_dict`` entries is stored once. The header metadata holds, under the key
``"tying"``, versioned JSON::

    {"version": 2,
     "ties": [{"source": "encoder.weight", "target": "decoder.weight", "transform": null}, ...],
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
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from tying._io import atomic_save_file
from tying._paths import logical_path, unwrap
from tying._unionfind import UnionFind
from tying.core import check_tie, declare, retie, source_keys, state_key_pairs
from tying.errors import CheckpointError, TieError
from tying.spec import Tie, TieSpec, get_spec
from tying.transforms import apply_transform
from tying.verification import require_intact

__all__ = ["save", "save_state_dict", "require_savable", "load", "read_checkpoint", "CheckpointInfo", "TensorInfo", "LoadResult"]

_META_KEY = "tying"
_RESERVED = (_META_KEY, "format")
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


# --------------------------------------------------------------------------- save


def _alias_key(t: torch.Tensor) -> tuple[object, ...]:
    """Entries with equal keys are the same tensor view (tied), safe to store once."""
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _sharded(state: dict[str, torch.Tensor]) -> list[str]:
    """Keys of tensors that are wrapper subclasses (FSDP2's DTensor shards): no file holds them as they are."""
    return [k for k, v in state.items() if is_traceable_wrapper_subclass(v)]


def save(model: nn.Module, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s ``state_dict`` to a safetensors file, each tie group once, with the tie
    spec (and transforms) in the header metadata; crash-safe (temporary folder, fsync, rename:
    :func:`tying._io.atomic_write`).

    ``metadata`` adds string entries to the header (the keys ``"tying"`` and ``"format"`` are
    reserved). Distinct Parameters that merely overlap in memory (undeclared views) are written
    as separate copies, with a warning. Raises :class:`CheckpointError` for a model whose declared
    ties are broken (call :func:`tying.retie` or :func:`tying.untie` first), that holds meta
    tensors (call :func:`tying.materialize` first) or sharded tensors (FSDP2: call
    :func:`tying.distributed.save` on every rank, which gathers them). A ``path`` that is a folder
    or lies in a folder that does not exist raises ``IsADirectoryError`` / ``FileNotFoundError``
    naming it.
    """
    model = unwrap(model)
    path = Path(path)
    require_savable(model, path)
    state = model.state_dict()
    sharded = _sharded(state)
    if sharded:
        raise CheckpointError(
            f"refusing to write {str(path)!r}: {len(sharded)} tensors are sharded ({', '.join(sharded[:3])}...); "
            "call tying.distributed.save(model, path) on every rank, which gathers them and writes from rank 0"
        )
    return save_state_dict(state, path, spec=get_spec(model), metadata=metadata)


def require_savable(model: nn.Module, path: Path) -> None:
    """Raise :class:`CheckpointError` unless every declared tie of ``model`` holds: a file must
    never record a spec that its tensors contradict."""
    require_intact(
        model,
        CheckpointError,
        f"refusing to write {str(path)!r}",
        "call tying.retie(model) to restore them or tying.untie(model, path) to drop them",
    )


def save_state_dict(
    state: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    spec: TieSpec | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a plain ``state_dict`` (CPU or device tensors; entries that are the same tensor view
    are tied and stored once) and the tie ``spec`` it belongs to, in the format of :func:`save`.
    The writer behind :func:`save` and :func:`tying.distributed.save`."""
    path = Path(path)
    spec = spec or TieSpec()
    if metadata is not None:
        bad = [k for k, v in metadata.items() if k in _RESERVED or not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise CheckpointError(f"metadata for {str(path)!r}: keys {_RESERVED} are reserved and values must be strings; bad: {bad}")
    meta = [k for k, t in state.items() if t.device.type == "meta"]
    if meta:
        raise CheckpointError(
            f"refusing to write {str(path)!r}: {len(meta)} tensors are on the meta device ({', '.join(meta[:3])}...); "
            "call tying.materialize(model, device) and load or initialise the weights first"
        )
    # Spec sources first, so a group is stored under the name its declaration uses.
    preferred = source_keys(spec)
    position = {k: i for i, k in enumerate(state)}
    order = sorted(state, key=lambda k: (k not in preferred, position[k]))
    kept: dict[tuple[object, ...], str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key in order:
        t = state[key]
        ak = _alias_key(t)
        if ak in kept:
            aliases[key] = kept[ak]
        else:
            kept[ak] = key
            tensors[key] = t
    tensors = {k: tensors[k] for k in state if k in tensors}  # file order follows the model
    _separate_overlapping(tensors, path)
    # The spec implies its targets' aliases; keeping them out halves the header of heavily tied models.
    implied = _implied_aliases(spec, set(tensors), aliases)
    aliases = {k: v for k, v in aliases.items() if implied.get(k) != v}
    header = {
        "format": "pt",
        _META_KEY: json.dumps({**spec.to_dict(), "aliases": aliases}, sort_keys=True),
    }
    header.update(metadata or {})
    return atomic_save_file({k: v.contiguous() for k, v in tensors.items()}, path, header)


def _separate_overlapping(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses entries sharing memory; copy the distinct-but-overlapping ones."""
    seen: dict[tuple[object, int], str] = {}
    for key, t in list(tensors.items()):
        if t.numel() == 0:
            continue
        sk = (t.device, t.untyped_storage().data_ptr())
        if sk in seen:
            warnings.warn(
                f"{str(path)!r}: {key!r} shares memory with {seen[sk]!r} but is a different view and not a declared tie; "
                "it is saved as an independent copy",
                stacklevel=4,  # the caller of tying.save
            )
            tensors[key] = t.clone()
        else:
            seen[sk] = key


# --------------------------------------------------------------------------- read


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

    def groups(self) -> list[list[str]]:
        """Stored key first, then the keys reading it, in file order."""
        out: dict[str, list[str]] = {}
        for dropped, kept in self.aliases.items():
            out.setdefault(kept, [kept]).append(dropped)
        return [out[t.name] for t in self.tensors if t.name in out]


# safetensors dtypes that torch reads one element per element. The sub-byte F4/F6 types pack
# several values into one torch element, so their torch shapes differ from the header's.
_TORCH_DTYPES: dict[str, torch.dtype] = {
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
_DTYPE_BYTES = {name: dtype.itemsize for name, dtype in _TORCH_DTYPES.items()}


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


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read and validate the header of a safetensors file (ours, ``safetensors.torch.save_model``'s
    or a plain state dict) without loading tensor data. Raises :class:`CheckpointError` naming the
    file for anything that is not a well-formed safetensors file (pickle included: never run)."""
    path = Path(path)
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
    spec: TieSpec | None = None
    aliases: dict[str, str] = {}
    stored = set(names)
    if _META_KEY in meta:
        try:
            data = json.loads(meta[_META_KEY])
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            spec = TieSpec.from_dict({k: v for k, v in data.items() if k != "aliases"})
            aliases = data.get("aliases", {})
            if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
                raise ValueError("'aliases' must map strings to strings")
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            raise CheckpointError(f"{str(path)!r}: malformed tying metadata: {exc}") from None
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
    aliases = {**_implied_aliases(file_spec, stored, aliases), **aliases}
    return CheckpointInfo(path, size, n, tensors, aliases, spec, fmt, meta)


def _implied_aliases(spec: TieSpec, stored: set[str], aliases: dict[str, str]) -> dict[str, str]:
    """``{target key: stored key}`` for each tie target key of ``spec`` the file does not store:
    what its source's key is stored as."""
    out = {}
    for t in spec.ties:
        for src, tgt in state_key_pairs(spec, t):
            where = src if src in stored else aliases.get(src)
            if tgt not in stored and where is not None:
                out[tgt] = where
    return out


# --------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    """What :func:`load` did."""

    #: Ties recorded in the file that the model lacked and now holds.
    applied_ties: list[Tie] = field(default_factory=list)
    #: Model keys the file lacked (kept their values; only with ``strict=False``).
    missing_keys: list[str] = field(default_factory=list)
    #: File tensors the model has no place for (ignored; only with ``strict=False``).
    unexpected_keys: list[str] = field(default_factory=list)
    #: Problems tolerated because ``strict=False``.
    warnings: list[str] = field(default_factory=list)


def load(model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> LoadResult:
    """Fill ``model`` from a safetensors file and re-establish the ties the file records that the
    model lacks. All or nothing: every check runs before the first value is written.

    Reads files from :func:`save`, ``safetensors.torch.save_model`` (``{dropped: kept}`` metadata)
    and plain state-dict files. A file that stores two entries as one tensor gives one tensor back:
    its declared ties (:func:`save`'s spec) and its aliases — from :func:`save`, whose aliases also
    cover sharing nobody declared (nanoGPT's ``wte.weight = lm_head.weight``), and from
    ``save_model``'s metadata — become ties of the model (declared in its spec and listed in
    ``LoadResult.applied_ties``). Refuses with :class:`CheckpointError`, naming keys, shapes and
    the file: a shape or dtype that differs from the model's (with a hint to
    :func:`tying.resize_vocab` when only a vocabulary-like size differs); a tie the file records
    that contradicts one the model declares or that the model cannot hold; two stored copies of
    what the model holds as one tensor that disagree (``load_state_dict`` would silently keep the
    last one), for declared ties and undeclared sharing alike; missing or unexpected keys.

    ``strict=False`` is the explicit opt-out: missing keys keep the model's values, unexpected
    keys are ignored, dtypes are converted, disagreeing copies resolve to the source's (or first
    path's) values, the model's own declarations win over the file's, and file aliases the model
    cannot hold load as separate copies; each is listed in ``LoadResult.warnings`` and warned.
    Shape mismatches always fail. Load into a model before sharding it with FSDP2; a sharded
    model is refused.
    """
    model = unwrap(model)
    path = Path(path)
    state = model.state_dict(keep_vars=True)
    sharded = _sharded(state)
    if sharded:
        raise CheckpointError(
            f"cannot load {str(path)!r} into a sharded (DTensor) model: load it into the model before fully_shard, "
            f"or use torch.distributed.checkpoint.state_dict.set_model_state_dict (sharded: {', '.join(sharded[:3])})"
        )
    info = read_checkpoint(path)
    problems: list[str] = []
    tolerated: list[str] = []
    model_spec = get_spec(model)
    work = TieSpec(list(model_spec.ties), dict(model_spec.parametrizations))
    file_parametrized = info.spec.parametrizations if info.spec else {}
    for source in sorted(set(file_parametrized) | set(model_spec.parametrizations)):
        theirs, mine_p = file_parametrized.get(source), model_spec.parametrizations.get(source)
        if theirs != mine_p:
            fix = (
                f"call tying.weight_norm(model, {source!r}, dim={theirs['dim']}) before loading"
                if theirs is not None and theirs.get("kind") == "weight_norm" and mine_p is None
                else "build the model as the file's was"
            )
            problems.append(
                f"the file records {source!r} as {theirs or 'a plain tensor'} but the model as {mine_p or 'a plain tensor'}; {fix}"
            )

    # 1. Ties recorded in the file: already held, to apply, or contradicting the model's.
    to_apply: list[Tie] = []
    for t in info.spec.ties if info.spec else []:
        mine = model_spec.source_of(t.target)
        if mine == t:
            continue
        if mine is not None or model_spec.targets_of(t.target):
            msg = (
                f"the file ties {t.describe()!r} but the model declares "
                f"{mine.describe() if mine else 'a different tie involving ' + repr(t.target)!s}"
            )
            (tolerated if not strict else problems).append(msg)
            continue
        try:
            checked = check_tie(model, work, t.source, t.target, t.transform)
        except TieError as exc:
            problems.append(f"cannot apply the file's tie {t.describe()!r}: {exc}")
            continue
        if checked is not None:
            to_apply.append(checked)
            work.ties.append(checked)

    # 2. Entries the file stores once (aliases) must be one tensor in the model too.
    groups = _tied_keys(work, state)
    file_groups = _tied_keys(info.spec or TieSpec(), {})
    params = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    for dropped, kept in info.aliases.items():
        if dropped not in state or kept not in state or groups.find(dropped) == groups.find(kept):
            continue  # a key the model lacks is reported below; a group the model holds or declares is fine
        if file_groups.find(dropped) == file_groups.find(kept):
            continue  # a tie the file declares: step 1 applied it or reported why not
        plain = all(k in params and logical_path(k, model) == k for k in (dropped, kept))
        try:
            if not plain:
                raise TieError("only plain parameters can be tied (one of them is a buffer or inside a parametrization)")
            # The member heading a declared group stays the source, else the stored key.
            source, target = (dropped, kept) if work.targets_of(dropped) and not work.targets_of(kept) else (kept, dropped)
            checked = check_tie(model, work, source, target)
        except TieError as exc:
            (tolerated if not strict else problems).append(
                f"the file stores {dropped!r} and {kept!r} as one tensor but the model cannot hold that tie ({exc}); "
                "they would load as two copies"
            )
            continue
        if checked is not None:
            to_apply.append(checked)
            work.ties.append(checked)
            groups.union([dropped, kept])

    # 3. Every model entry that is not a tie target needs a stored tensor of the same shape/dtype.
    derived = {t.target for t in work.ties} | {k for t in work.ties for _, k in state_key_pairs(work, t)}
    stored = {ti.name: ti for ti in info.tensors}

    def stored_name(key: str) -> str | None:
        return key if key in stored else info.aliases.get(key)

    meta_keys = [k for k, v in state.items() if v.device.type == "meta"]
    if meta_keys:
        problems.append(f"the model holds meta tensors ({', '.join(meta_keys[:3])}); call tying.materialize(model, device) first")
    plan: dict[str, str] = {}
    used: set[str] = set()
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    first_of: dict[int, str] = {}  # one key per tensor object: undeclared sharing is filled once
    for key, value in state.items():
        if key in derived:
            continue
        name = stored_name(key)
        if name is None:
            (tolerated if not strict else problems).append(f"missing key {key!r}")
            continue
        used.add(name)
        ti = stored[name]
        if ti.dtype not in _TORCH_DTYPES:  # refused even when not strict: it cannot be converted
            problems.append(f"{key!r}: the file holds {ti.dtype} (as {name!r}), which torch cannot read as {list(ti.shape)}")
            continue
        if tuple(value.shape) != ti.shape:
            mismatched.append((key, ti.shape, tuple(value.shape)))
            problems.append(f"{key!r}: the file holds shape {list(ti.shape)} (as {name!r}), the model {list(value.shape)}")
            continue
        if _st_dtype(value.dtype) != ti.dtype:
            (tolerated if not strict else problems).append(
                f"{key!r}: the file holds {ti.dtype} (as {name!r}), the model {value.dtype}"
            )
        if first_of.setdefault(id(value), key) == key:
            plan[key] = name
    hint = _resize_hint(mismatched)
    if hint:
        problems.append(hint)

    # 4. What the model holds as one tensor, the file may store twice: the copies must agree.
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for t in work.ties:
            checks: list[tuple[str, str, str | None]] = [(s, k, None) for s, k in state_key_pairs(work, t)]
            if t.source not in work.parametrizations and t.transform is not None:
                checks.append((t.source, t.target, t.transform))  # an untied file stores the target in its own layout
            for src_key, key, transform in checks:
                src_name, name = stored_name(src_key), stored_name(key)
                if name is None or src_name is None or name == src_name:
                    continue
                used.add(name)
                if _copies_differ(f, stored, name, src_name, transform):
                    (tolerated if not strict else problems).append(
                        f"the model ties {t.describe()!r} but the file's copies {name!r} and {src_name!r} differ "
                        "(the source's values are used)"
                    )
        declared = _tied_keys(work, {})
        for keys in _shared_keys(state):
            if len({declared.find(k) for k in keys}) == 1:
                continue  # a declared group, checked above
            names = [(k, n) for k in keys if (n := stored_name(k)) is not None]
            for key, name in names[1:]:
                if name != names[0][1] and _copies_differ(f, stored, name, names[0][1], None):
                    (tolerated if not strict else problems).append(
                        f"{names[0][0]!r} and {key!r} are one tensor in the model but the file's copies {names[0][1]!r} "
                        f"and {name!r} differ (the values of {names[0][1]!r} are used)"
                    )
    unexpected = sorted(set(stored) - used)
    if unexpected:
        (tolerated if not strict else problems).append(f"unexpected keys (the model has no place for them): {unexpected}")
    if problems:
        head = f"cannot load {str(path)!r} into {type(model).__name__}; nothing was changed:"
        raise CheckpointError("\n  - ".join([head, *problems]))

    # 5. Apply: first the missing ties, then the values.
    declare(model, to_apply)
    state = model.state_dict(keep_vars=True)
    with safe_open(str(path), framework="pt", device="cpu") as f, torch.no_grad():
        for key, name in plan.items():
            state[key].copy_(f.get_tensor(name))
    retie(model)
    for w in tolerated:
        warnings.warn(f"{str(path)!r}: {w}", stacklevel=2)
    return LoadResult(
        applied_ties=to_apply,
        missing_keys=[k for k in state if k not in plan and k not in derived and stored_name(k) is None],
        unexpected_keys=unexpected,
        warnings=tolerated,
    )


def _tied_keys(spec: TieSpec, state: dict[str, torch.Tensor]) -> UnionFind[str]:
    """``state_dict`` keys that are (or, once ``spec`` is applied, will be) one tensor: joined by
    the spec's ties and by the tensor objects ``state`` shares."""
    sets: UnionFind[str] = UnionFind(state)
    for t in spec.ties:
        sets.union([t.source, t.target])
        for src, tgt in state_key_pairs(spec, t):
            sets.union([src, tgt])
    for keys in _shared_keys(state):
        sets.union(keys)
    return sets


def _shared_keys(state: dict[str, torch.Tensor]) -> list[list[str]]:
    """Groups of ``state_dict(keep_vars=True)`` keys holding one tensor object (ties, aliased modules)."""
    by_object: dict[int, list[str]] = {}
    for key, value in state.items():
        by_object.setdefault(id(value), []).append(key)
    return [keys for keys in by_object.values() if len(keys) > 1]


def _resize_hint(mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> str | None:
    """When every shape mismatch is one dimension of the same two sizes, a vocabulary resize fixes it."""
    sizes = set()
    for _, file_shape, model_shape in mismatched:
        if len(file_shape) != len(model_shape):
            return None
        diff = [(a, b) for a, b in zip(file_shape, model_shape, strict=True) if a != b]
        if len(diff) != 1:
            return None
        sizes.add(diff[0])
    if len(sizes) != 1:
        return None
    (want, have), = sizes
    keys = ", ".join(repr(k) for k, _, _ in mismatched[:3])
    return (
        f"only one size differs ({keys}: the file has {want} where the model has {have}); if it is the vocabulary, "
        f"call tying.resize_vocab(model, {want}) before loading"
    )


def _copies_differ(f: safe_open, stored: dict[str, TensorInfo], name: str, src_name: str, transform: str | None) -> bool:
    """Whether the stored tensor ``name`` is not the stored ``src_name`` read through ``transform``.
    Without reading them: copies of different dtypes or of a dtype torch cannot read differ, and so
    do copies of a source the transform does not apply to (a transpose of fewer than 2 dimensions)."""
    copy, src = stored[name], stored[src_name]
    if copy.dtype != src.dtype or copy.dtype not in _TORCH_DTYPES or (transform is not None and len(src.shape) < 2):
        return True
    val, src_val = f.get_tensor(name), apply_transform(transform, f.get_tensor(src_name))
    return val.shape != src_val.shape or not torch.equal(val, src_val)


_ST_DTYPES = {dtype: name for name, dtype in _TORCH_DTYPES.items()}


def _st_dtype(dtype: torch.dtype) -> str:
    return _ST_DTYPES.get(dtype, str(dtype))
