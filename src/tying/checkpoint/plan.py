"""Planning a load: read the file's header, check it against the model and decide which ties to
declare and which stored tensor fills each entry, changing nothing (:func:`plan_load`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from tying._paths import logical_path
from tying._unionfind import UnionFind
from tying.checkpoint.reader import TORCH_DTYPES, CheckpointInfo, TensorInfo, read_checkpoint, st_dtype
from tying.checkpoint.writer import sharded_keys
from tying.integrations import library_ties
from tying.checks import check_tie
from tying.errors import CheckpointError, TieError
from tying.spec import Tie, TieSpec, get_spec, state_key_pairs
from tying.transforms import TieTransform


@dataclass
class LoadPlan:
    """What :func:`tying.load` will do, decided from the file and the model without changing either."""

    path: Path
    info: CheckpointInfo
    strict: bool
    #: The model's declarations and, appended, the ties to apply.
    work: TieSpec
    #: Ties recorded in the file (or implied by its aliases) that the model lacks.
    to_apply: list[Tie] = field(default_factory=list)
    #: Model ``state_dict`` key -> the stored tensor to copy into it (one key per tensor object).
    copies: dict[str, str] = field(default_factory=dict)
    #: Keys filled through a tie (targets), which need no stored tensor of their own.
    derived: set[str] = field(default_factory=set)
    #: Stored tensors the plan reads or checks.
    used: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)
    #: Reasons to refuse the file, and problems ``strict=False`` tolerates (with a warning).
    problems: list[str] = field(default_factory=list)
    tolerated: list[str] = field(default_factory=list)
    #: The file's tensors by name.
    stored: dict[str, TensorInfo] = field(init=False)

    def __post_init__(self) -> None:
        self.stored = {ti.name: ti for ti in self.info.tensors}

    def tolerate(self, message: str) -> None:
        """A problem only ``strict=True`` refuses."""
        (self.tolerated if not self.strict else self.problems).append(message)

    def stored_name(self, key: str) -> str | None:
        """The stored tensor holding ``key``'s data, if the file has one."""
        return key if key in self.stored else self.info.aliases.get(key)


def plan_load(model: nn.Module, path: Path, *, strict: bool) -> LoadPlan:
    """Read ``path`` and check it against ``model``: the plan lists the ties to declare, the
    tensor to copy into each entry and every problem (the caller refuses when there are any)."""
    state = model.state_dict(keep_vars=True)
    sharded = sharded_keys(state)
    if sharded:
        raise CheckpointError(
            f"cannot load {str(path)!r} into a sharded (DTensor) model: load it into the model before fully_shard, "
            f"or use torch.distributed.checkpoint.state_dict.set_model_state_dict (sharded: {', '.join(sharded[:3])})"
        )
    info = read_checkpoint(path)
    if info.wrapped:
        kinds = sorted({str(e["class"]).rpartition(".")[2] for e in info.wrapped.values()})
        raise CheckpointError(
            f"cannot load {str(path)!r} with tying.load: it holds quantized tensors ({', '.join(kinds)}: "
            f"{', '.join(list(info.wrapped)[:3])}); load it with tying.quant.load(model, path)"
        )
    model_spec = get_spec(model)
    plan = LoadPlan(path, info, strict, TieSpec(list(model_spec.ties), dict(model_spec.parametrizations)))
    _compare_parametrizations(plan, model_spec)
    _plan_file_ties(plan, model, model_spec)
    _plan_alias_ties(plan, model, state)
    _plan_copies(plan, model, state)
    _check_stored_copies(plan, state)
    plan.unexpected = sorted(set(plan.stored) - plan.used)
    if plan.unexpected:
        plan.tolerate(f"unexpected keys (the model has no place for them): {plan.unexpected}")
    return plan


def _compare_parametrizations(plan: LoadPlan, model_spec: TieSpec) -> None:
    """Tie sources the file and the model compute differently (weight normalization)."""
    file_parametrized = plan.info.spec.parametrizations if plan.info.spec else {}
    for source in sorted(set(file_parametrized) | set(model_spec.parametrizations)):
        theirs, mine_p = file_parametrized.get(source), model_spec.parametrizations.get(source)
        if theirs != mine_p:
            fix = (
                f"call tying.weight_norm(model, {source!r}, dim={theirs['dim']}) before loading"
                if theirs is not None and theirs.get("kind") == "weight_norm" and mine_p is None
                else "build the model as the file's was"
            )
            plan.problems.append(
                f"the file records {source!r} as {theirs or 'a plain tensor'} but the model as {mine_p or 'a plain tensor'}; {fix}"
            )


def _plan_file_ties(plan: LoadPlan, model: nn.Module, model_spec: TieSpec) -> None:
    """1. Ties recorded in the file: already held, to apply, or contradicting the model's."""
    for t in plan.info.spec.ties if plan.info.spec else []:
        mine = model_spec.source_of(t.target)
        if mine == t:
            continue
        if mine is not None or model_spec.targets_of(t.target):
            plan.tolerate(
                f"the file ties {t.describe()!r} but the model declares "
                f"{mine.describe() if mine else 'a different tie involving ' + repr(t.target)!s}"
            )
            continue
        try:
            checked = check_tie(model, plan.work, t.source, t.target, t.transform, t.params)
        except TieError as exc:
            plan.problems.append(f"cannot apply the file's tie {t.describe()!r}: {exc}")
            continue
        if checked is not None:
            plan.to_apply.append(checked)
            plan.work.ties.append(checked)


def _plan_alias_ties(plan: LoadPlan, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """2. Entries the file stores once (aliases) must be one tensor in the model too."""
    groups = _tied_keys(plan.work, state)
    file_groups = _tied_keys(plan.info.spec or TieSpec(), {})
    params = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    for dropped, kept in plan.info.aliases.items():
        if dropped not in state or kept not in state or groups.find(dropped) == groups.find(kept):
            continue  # a key the model lacks is reported below; a group the model holds or declares is fine
        if file_groups.find(dropped) == file_groups.find(kept):
            continue  # a tie the file declares: step 1 applied it or reported why not
        plain = all(k in params and logical_path(k, model) == k for k in (dropped, kept))
        try:
            if not plain:
                raise TieError("only plain parameters can be tied (one of them is a buffer or inside a parametrization)")
            # The member heading a declared group stays the source, else the stored key.
            work = plan.work
            source, target = (dropped, kept) if work.targets_of(dropped) and not work.targets_of(kept) else (kept, dropped)
            checked = check_tie(model, work, source, target)
        except TieError as exc:
            plan.tolerate(
                f"the file stores {dropped!r} and {kept!r} as one tensor but the model cannot hold that tie ({exc}); "
                "they would load as two copies"
            )
            continue
        if checked is not None:
            plan.to_apply.append(checked)
            plan.work.ties.append(checked)
            groups.union([dropped, kept])


def _plan_copies(plan: LoadPlan, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """3. Every model entry that is not a tie target needs a stored tensor of the same shape/dtype."""
    work, stored = plan.work, plan.stored
    plan.derived = {t.target for t in work.ties} | {k for t in work.ties for _, k in state_key_pairs(work, t)}
    meta_keys = [k for k, v in state.items() if v.device.type == "meta"]
    if meta_keys:
        plan.problems.append(f"the model holds meta tensors ({', '.join(meta_keys[:3])}); call tying.materialize(model, device) first")
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    first_of: dict[int, str] = {}  # one key per tensor object: undeclared sharing is filled once
    missing: list[str] = []
    for key, value in state.items():
        if key in plan.derived:
            continue
        name = plan.stored_name(key)
        if name is None:
            missing.append(key)
            continue
        plan.used.add(name)
        ti = stored[name]
        if ti.dtype not in TORCH_DTYPES:  # refused even when not strict: it cannot be converted
            plan.problems.append(f"{key!r}: the file holds {ti.dtype} (as {name!r}), which torch cannot read as {list(ti.shape)}")
            continue
        if tuple(value.shape) != ti.shape:
            mismatched.append((key, ti.shape, tuple(value.shape)))
            plan.problems.append(f"{key!r}: the file holds shape {list(ti.shape)} (as {name!r}), the model {list(value.shape)}")
            continue
        if st_dtype(value.dtype) != ti.dtype:
            plan.tolerate(f"{key!r}: the file holds {ti.dtype} (as {name!r}), the model {value.dtype}")
        if first_of.setdefault(id(value), key) == key:
            plan.copies[key] = name
    _report_missing(plan, model, missing)
    hint = _resize_hint(mismatched)
    if hint:
        plan.problems.append(hint)


def _report_missing(plan: LoadPlan, model: nn.Module, missing: list[str]) -> None:
    """Each missing key; one that a library (transformers) declares as a tie's target, which files
    storing each tie once leave out, names the call that declares the tie."""
    ties, call = library_ties(model) if missing else ({}, "")
    for key in missing:
        source = ties.get(key)
        hint = "" if source is None else (
            f" (the model's class ties it to {source!r} and the file stores that tie once; declare the ties with {call} before loading)"
        )
        plan.tolerate(f"missing key {key!r}{hint}")


def _check_stored_copies(plan: LoadPlan, state: dict[str, torch.Tensor]) -> None:
    """4. What the model holds as one tensor, the file may store twice: the copies must agree."""
    work, stored = plan.work, plan.stored
    with safe_open(str(plan.path), framework="pt", device="cpu") as f:
        for t in work.ties:
            checks: list[tuple[str, str, TieTransform | None]] = [(s, k, None) for s, k in state_key_pairs(work, t)]
            if t.source not in work.parametrizations and t.transform is not None:
                checks.append((t.source, t.target, t.make_transform()))  # an untied file stores the target in its own layout
            for src_key, key, transform in checks:
                src_name, name = plan.stored_name(src_key), plan.stored_name(key)
                if name is None or src_name is None or name == src_name:
                    continue
                plan.used.add(name)
                if _copies_differ(f, stored, name, src_name, transform):
                    plan.tolerate(
                        f"the model ties {t.describe()!r} but the file's copies {name!r} and {src_name!r} differ "
                        "(the source's values are used)"
                    )
        declared = _tied_keys(work, {})
        for keys in _shared_keys(state):
            if len({declared.find(k) for k in keys}) == 1:
                continue  # a declared group, checked above
            names = [(k, n) for k in keys if (n := plan.stored_name(k)) is not None]
            for key, name in names[1:]:
                if name != names[0][1] and _copies_differ(f, stored, name, names[0][1], None):
                    plan.tolerate(
                        f"{names[0][0]!r} and {key!r} are one tensor in the model but the file's copies {names[0][1]!r} "
                        f"and {name!r} differ (the values of {names[0][1]!r} are used)"
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


def _copies_differ(f: safe_open, stored: dict[str, TensorInfo], name: str, src_name: str, transform: TieTransform | None) -> bool:
    """Whether the stored tensor ``name`` is not the stored ``src_name`` read through ``transform``.
    Without reading them: copies of different dtypes or of a dtype torch cannot read differ, and so
    do copies of a source the transform does not apply to (a transpose of fewer than 2 dimensions)."""
    copy, src = stored[name], stored[src_name]
    if copy.dtype != src.dtype or copy.dtype not in TORCH_DTYPES:
        return True
    if transform is not None and (len(src.shape) < transform.min_dims or transform.mismatch(src.shape) is not None):
        return True
    val, src_val = f.get_tensor(name), f.get_tensor(src_name)
    if transform is not None:
        src_val = transform(src_val)
    return val.shape != src_val.shape or not torch.equal(val, src_val)
