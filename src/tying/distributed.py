"""Weight ties under data parallelism: DDP needs nothing; FSDP2 needs every tie group in one unit.

**DDP.** ``DistributedDataParallel`` registers each Parameter once (it walks ``module.parameters()``,
which lists a shared Parameter once), so a tied Parameter is all-reduced once, with the sum of the
gradients of all its uses: a tied model needs nothing special, and every rank keeps the tie.

**FSDP2.** ``torch.distributed.fsdp.fully_shard(module)`` makes the parameters of ``module`` (minus
those of submodules sharded before) one *unit*: one flat all-gather before the unit's forward, one
reduce-scatter after its backward. A Parameter reachable from two units — the input embedding in
one, the tied output layer in another — is refused at the first forward with ``ValueError:
Parameter 'head.weight' is shared with a parameter already managed by another FSDP group``.
:func:`shard_groups` plans units that hold each tie group whole (the modules owning a group's
members become one ``fully_shard([...])`` call, merged transitively with any unit they overlap),
and :func:`fully_shard_tied` applies the plan bottom-up, the root last.

:func:`save` gathers a sharded model's full tensors (each tie group once) and hands them to the
checkpoint writer (:func:`tying.checkpoint.save_state_dict`) on rank 0; the file format knows
nothing of sharding. See ``docs/distributed.md``. Importing this module does not import FSDP.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.utils import parametrize

from tying._paths import unwrap
from tying._unionfind import UnionFind
from tying.checkpoint.writer import require_savable, save_state_dict
from tying.discovery import find_ties
from tying.errors import CheckpointError, TieError
from tying.spec import get_spec

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

__all__ = ["ShardPlan", "ShardUnit", "fully_shard_tied", "save", "shard_groups"]


@dataclass(frozen=True)
class ShardUnit:
    """Modules sharded together by one ``fully_shard`` call, and the tie groups they hold whole."""

    #: Module paths (never the root, which is always the last unit).
    modules: tuple[str, ...]
    #: Each tie group this unit holds, as its parameter paths.
    ties: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class ShardPlan:
    """The ``fully_shard`` calls that keep every tie group inside one unit, in the order to apply
    them (a unit before any unit that contains one of its modules), then the root."""

    units: tuple[ShardUnit, ...]
    #: Tie groups left to the root unit: a member is a parameter of the root module itself, so
    #: no smaller unit can hold the group.
    root_ties: tuple[tuple[str, ...], ...] = ()

    def __str__(self) -> str:
        lines = []
        for u in [*self.units, ShardUnit(("<root>",), self.root_ties)]:
            call = f"fully_shard({u.modules[0]})" if len(u.modules) == 1 else f"fully_shard([{', '.join(u.modules)}])"
            lines.append(call + (f"  # ties {'; '.join(', '.join(g) for g in u.ties)}" if u.ties else ""))
        return "\n".join(lines)


def _default_units(model: nn.Module) -> list[str]:
    """Each child of every ``nn.ModuleList`` (a transformer's blocks), in module order; not the
    lists of parametrizations (``ParametrizationList`` is a ``ModuleList`` too)."""
    return [
        f"{name}.{i}" if name else str(i)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and not isinstance(m, parametrize.ParametrizationList)
        for i, child in enumerate(m)
        if child is not None  # a ModuleList may hold None placeholders (skipped layers)
    ]


def shard_groups(model: nn.Module, units: Iterable[str | nn.Module] | None = None) -> ShardPlan:
    """Plan FSDP2 units for ``model`` so that each group of paths sharing one Parameter
    (:func:`tying.find_ties`: declared ties, transposed ties and undeclared sharing alike) lies
    inside exactly one unit.

    ``units`` names the modules you want sharded on their own (paths or module objects; default:
    each child of every ``nn.ModuleList``, i.e. each transformer block). The modules that own the
    members of a tie group form one unit (``fully_shard([embed, head])``); a unit that owns part
    of a tie group is merged with that group's unit, transitively, and units that contain each
    other's modules in a cycle are merged, so the plan can be applied bottom-up. A group with a
    member directly on the root module is left to the root unit (listed in ``root_ties``), and the
    units that owned its other members are dropped. Pure: needs no process group.

    Raises:
        TieError: ``units`` names the root or a module outside ``model``; or distinct Parameters
            share memory (views): FSDP copies each into its own shard, which would silently untie
            them (declare the tie with :func:`tying.tie` or give each its own tensor).
    """
    model = unwrap(model)
    by_path = dict(model.named_modules(remove_duplicate=False))
    name: dict[int, str] = {}  # each module's first path, in module order
    ancestors: dict[int, set[int]] = {}  # proper ancestors over every path a module is registered under
    for path, m in by_path.items():
        name.setdefault(id(m), path)
        parts = path.split(".") if path else []
        ancestors.setdefault(id(m), set()).update(id(by_path[".".join(parts[:i])]) for i in range(len(parts)))
    position = {key: i for i, key in enumerate(name)}
    root = id(model)

    groups: list[tuple[tuple[str, ...], set[int]]] = []
    for g in find_ties(model):
        if g.kind != "shared":
            raise TieError(
                f"{', '.join(g.paths)} are distinct Parameters over the same memory; FSDP shards each into its own "
                "copy, which unties them. Declare the tie with tying.tie(model, source, target) or give each its own tensor"
            )
        groups.append((tuple(g.paths), {id(by_path[p.rpartition(".")[0]]) for p in g.paths}))

    sets: UnionFind[int] = UnionFind()  # the modules that start a unit, by the unit they join

    def join(modules: Iterable[int]) -> None:
        sets.union(sorted(modules, key=position.__getitem__))

    def current() -> dict[int, list[int]]:
        return {r: sorted(ms, key=position.__getitem__) for r, ms in sets.groups().items()}

    def assigned(m: int) -> int:
        """The unit whose ``fully_shard`` call manages module ``m``'s own parameters."""
        holders = [a for a in {m} | ancestors[m] if a in sets]
        return sets.find(max(holders, key=lambda a: len(ancestors[a]))) if holders else root

    def inside(a: list[int], b: list[int]) -> bool:
        """Some module of ``a`` is a strict descendant of one of ``b``: ``a`` must be sharded first."""
        return any(ancestors[m] & set(b) for m in a)

    for u in _default_units(model) if units is None else units:
        module = u if isinstance(u, nn.Module) else by_path.get(u)
        if module is None or id(module) not in name or module is model:
            shown = u if isinstance(u, str) else type(u).__name__
            raise TieError(f"shard unit {shown!r} is not a submodule of {type(model).__name__} (the root is always the last unit)")
        join([id(module)])
    for _, owners in groups:
        if len(owners) > 1 and root not in owners:  # one owner: any unit holds it whole
            join(owners)
    while True:
        changed = True
        while changed:  # merge the units a tie group spans; the root unit absorbs them
            changed = False
            for _, owners in groups:
                reps = {assigned(m) for m in owners}
                if len(reps) > 1:
                    changed = True
                    if root in reps:
                        sets.discard([m for m in list(sets.parent) if sets.find(m) in reps])
                    else:
                        join(reps)
        units_now = current()
        order = TopologicalSorter({r: [o for o in units_now if o != r and inside(units_now[o], ms)] for r, ms in units_now.items()})
        try:
            order.prepare()
            break
        except CycleError as exc:  # units nested in each other crosswise: no order works, merge them
            join(exc.args[1])

    ties_of: dict[int, list[tuple[str, ...]]] = {}
    for paths, owners in groups:
        ties_of.setdefault(assigned(next(iter(owners))), []).append(paths)
    planned: list[ShardUnit] = []
    while order.is_active():
        ready = sorted(order.get_ready(), key=lambda r: position[units_now[r][0]])
        for r in ready:
            outer = [m for m in units_now[r] if not ancestors[m] & set(units_now[r])]  # drop modules inside another
            planned.append(ShardUnit(tuple(name[m] for m in outer), tuple(ties_of.get(r, ()))))
        order.done(*ready)
    return ShardPlan(tuple(planned), tuple(ties_of.get(root, ())))


def fully_shard_tied(
    model: nn.Module,
    *,
    units: Iterable[str | nn.Module] | None = None,
    mesh: DeviceMesh | None = None,
    **fully_shard_kwargs: Any,
) -> ShardPlan:
    """Apply ``torch.distributed.fsdp.fully_shard`` to ``model`` along :func:`shard_groups`:
    each planned unit (a list of modules for a tie group), bottom-up, then the root. Returns the
    plan it applied. ``mesh`` and ``fully_shard_kwargs`` (``reshard_after_forward``,
    ``mp_policy``, ``offload_policy``, ...) go to every call. Call it on every rank, after
    :func:`torch.distributed.init_process_group`, on a model whose ties are in place (declare them
    before sharding: FSDP replaces each Parameter by a sharded one, the same object for every
    path that shared it, so ties hold through training and :func:`tying.verify` passes).
    """
    from torch.distributed.fsdp import fully_shard  # imports FSDP (about half a second): only here

    model = unwrap(model)
    plan = shard_groups(model, units)
    for u in plan.units:
        modules = [model.get_submodule(p) for p in u.modules]
        fully_shard(modules if len(modules) > 1 else modules[0], mesh=mesh, **fully_shard_kwargs)
    fully_shard(model, mesh=mesh, **fully_shard_kwargs)
    return plan


# --------------------------------------------------------------------------- checkpoints


def save(model: nn.Module, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
    """:func:`tying.save` for a sharded model (FSDP2 ``fully_shard``, or any DTensor parameters):
    gather the full ``state_dict``, each tie group once, and write it from rank 0.

    A collective: call it on every rank, in the same order relative to other collectives. Each
    tensor is gathered once (``DTensor.full_tensor()``), so every path of a tie group maps to one
    tensor, as in an unsharded ``state_dict``; rank 0 keeps it on the CPU and writes the file
    (:func:`tying.checkpoint.save_state_dict`, with the model's tie spec), the others drop it.
    Returns on every rank once rank 0 has finished, raising there too if it failed. Works on an
    unsharded model as well (every rank holds the full tensors; rank 0 writes).
    """
    model = unwrap(model)
    path = Path(path)
    require_savable(model, path)
    spec = get_spec(model)
    dtensor = sys.modules.get("torch.distributed.tensor")
    rank0 = dist.get_rank() == 0
    gathered: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    mesh_device = "cpu"
    with torch.no_grad():
        for key, value in model.state_dict(keep_vars=True).items():
            if id(value) not in gathered:
                if dtensor is not None and isinstance(value, dtensor.DTensor):
                    mesh_device = value.device_mesh.device_type
                    full = value.full_tensor()
                else:
                    full = value
                gathered[id(value)] = full.detach().cpu() if rank0 else full.new_empty(0)
            state[key] = gathered[id(value)]
    # The status travels like the shards did: NCCL, for one, broadcasts device tensors only.
    device = torch.device(mesh_device)
    if mesh_device != "cpu":
        device = torch.device(mesh_device, torch.get_device_module(mesh_device).current_device())
    failed = torch.zeros(1, device=device)
    error: BaseException | None = None
    if rank0:
        try:
            save_state_dict(state, path, spec=spec, metadata=metadata)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
            error = exc
            failed += 1
    dist.broadcast(failed, src=0)
    if error is not None:
        raise error
    if failed.item():
        raise CheckpointError(f"rank 0 failed to write {str(path)!r}; its error says why")
    return path
