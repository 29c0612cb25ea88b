"""One rank of the 2-process gloo runs of ``tests/test_distributed.py`` (not collected by pytest).

    python tests/_distributed_worker.py {ddp,fsdp} RANK WORLD_SIZE OUT_DIR

Each rank trains tied models on its share of one global batch and writes what it observed to
``OUT_DIR/<scenario>-rank<RANK>.{safetensors,json}``; rank 0 also trains an unsharded copy on the
whole batch in one process (the reference). The test process compares the files.
"""

from __future__ import annotations

import copy
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import tying
from conftest import AutoEncoder, Seq2Seq, Stack, TinyLM  # tests/ is this script's sys.path[0]
from tying.distributed import fully_shard_tied
from tying.models import LSTMConfig, LSTMLanguageModel, TransformerConfig, TransformerLanguageModel

STEPS = 3
LR, MOMENTUM = 0.5, 0.9


@dataclass
class Case:
    """A tied model, a global batch and its loss. ``batch_dim`` is the dimension the ranks split."""

    make: Callable[[bool], nn.Module]  # tie: declare the model's ties
    batch: Callable[[], list[torch.Tensor]]
    loss: Callable[..., torch.Tensor]  # loss(model, *batch)
    batch_dim: int = 0


def _tied(model: nn.Module, tie: bool, *groups: tuple[str, ...]) -> nn.Module:
    for source, *targets in groups if tie else ():
        tying.tie(model, source, *targets)
    return model


def _lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def _ae(tie: bool) -> nn.Module:
    model = AutoEncoder(d=6, h=3)
    if tie:
        tying.tie_transposed(model, "enc.weight", "dec.weight")
    return model


def _lstm_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits, _ = model(tokens[:-1], getattr(model, "module", model).init_state(tokens.shape[1]))  # through DDP too
    return _lm_loss(logits, tokens[1:])


# 37 vocabulary rows shard unevenly over 2 ranks.
SMALL_GPT = TransformerConfig(vocab_size=37, context_size=8, embedding_size=16, num_layers=2, num_heads=2)


def _transformer(tie: bool) -> nn.Module:
    # The cross-block tie makes a unit nested in two blocks' units.
    model = TransformerLanguageModel(replace(SMALL_GPT, tie=tie))
    return _tied(model, tie, ("blocks.0.mlp.fc.weight", "blocks.1.mlp.fc.weight"))


def _ints(high: int, *shape: int) -> torch.Tensor:
    return torch.randint(0, high, shape)


CASES: dict[str, Case] = {
    "shared": Case(
        lambda tie: _tied(TinyLM(vocab=11, dim=4), tie, ("embed.weight", "head.weight")),
        lambda: [_ints(11, 4, 5), _ints(11, 4, 5)],
        lambda m, idx, target: _lm_loss(m(idx), target),
    ),
    "transposed": Case(_ae, lambda: [torch.randn(4, 6)], lambda m, x: F.mse_loss(m(x), x)),
    "cross_layer": Case(
        lambda tie: _tied(Stack(n=3, dim=4), tie, ("layers.0.weight", "layers.1.weight", "layers.2.weight")),
        lambda: [torch.randn(4, 4), torch.randn(4, 4)],
        lambda m, x, y: F.mse_loss(m(x), y),
    ),
    "three_way": Case(
        lambda tie: _tied(Seq2Seq(vocab=9, dim=4), tie, ("encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")),
        lambda: [_ints(9, 4, 5), _ints(9, 4, 3), _ints(9, 4, 3)],
        lambda m, src, tgt, y: _lm_loss(m(src, tgt), y),
    ),
    "lstm": Case(
        lambda tie: LSTMLanguageModel(LSTMConfig(vocab_size=23, embedding_size=16, hidden_size=16, num_layers=1, dropout=0.0, tie=tie)),
        lambda: [_ints(23, 7, 4)],
        _lstm_loss,
        batch_dim=1,
    ),
    "transformer": Case(_transformer, lambda: [_ints(37, 4, 9)], lambda m, tokens: _lm_loss(m(tokens[:, :-1]), tokens[:, 1:])),
}
SCENARIOS = {
    "ddp": ["shared", "transposed", "cross_layer", "three_way", "lstm"],
    "fsdp": ["transformer", "transposed", "cross_layer", "three_way"],
}


def _global_batch(case: Case) -> list[torch.Tensor]:
    torch.manual_seed(1234)  # the same batch on every rank
    return case.batch()


def _share(case: Case, batch: list[torch.Tensor], rank: int, world: int) -> list[torch.Tensor]:
    n = batch[0].shape[case.batch_dim] // world
    return [t.narrow(case.batch_dim, rank * n, n) for t in batch]


def _train(model: nn.Module, case: Case, batch: list[torch.Tensor], *, distributed: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    """``STEPS`` SGD steps; returns the loss of each step (the mean over ranks: the global batch's
    loss) and the gradients of the first step."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    losses, first_grads = [], {}
    for step in range(STEPS):
        opt.zero_grad()
        loss = case.loss(model, *batch)
        loss.backward()
        if step == 0:
            first_grads = {n: _full(p.grad) for n, p in getattr(model, "module", model).named_parameters()}
        opt.step()
        value = loss.detach().clone()
        if distributed:
            dist.all_reduce(value)
            value /= dist.get_world_size()
        losses.append(value.item())
    return losses, first_grads


def _full(t: torch.Tensor) -> torch.Tensor:
    """A detached, whole copy of ``t`` (a collective for a DTensor shard)."""
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


def _observe(model: nn.Module) -> dict[str, object]:
    """Tie groups (paths and kind) and ``tying.verify``'s verdict, as this rank sees them."""
    try:
        tying.verify(model)
        verdict = "ok"
    except tying.TieVerificationError as exc:
        verdict = str(exc)
    return {"groups": [[list(g.paths), g.kind] for g in tying.find_ties(model)], "verify": verdict}


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: _full(p) for n, p in model.named_parameters()}


def _put(tensors: dict[str, torch.Tensor], prefix: str, values: dict[str, torch.Tensor]) -> None:
    tensors.update({f"{prefix}/{k}": v.contiguous() for k, v in values.items()})


def run_ddp(rank: int, world: int, out: Path, tensors: dict[str, torch.Tensor], info: dict[str, object]) -> None:
    from torch.nn.parallel import DistributedDataParallel

    for name in SCENARIOS["ddp"]:
        case = CASES[name]
        torch.manual_seed(rank)  # a different init on every rank: DDP must broadcast rank 0's, ties included
        model = case.make(True)
        ddp = DistributedDataParallel(model)
        _put(tensors, f"{name}/init", _params(model))
        batch = _global_batch(case)
        losses, grads = _train(ddp, case, _share(case, batch, rank, world), distributed=True)
        _put(tensors, f"{name}/grad", grads)
        _put(tensors, f"{name}/param", _params(model))
        info[name] = {"losses": losses, "wrapped": _observe(ddp), "module": _observe(model)}
        if rank == 0:
            torch.manual_seed(0)
            ref = case.make(True)
            ref_losses, ref_grads = _train(ref, case, batch, distributed=False)
            _put(tensors, f"{name}/ref_grad", ref_grads)
            _put(tensors, f"{name}/ref_param", _params(ref))
            info[name]["ref_losses"] = ref_losses


def run_fsdp(rank: int, world: int, out: Path, tensors: dict[str, torch.Tensor], info: dict[str, object]) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    for name in SCENARIOS["fsdp"]:
        case = CASES[name]
        torch.manual_seed(0)  # fully_shard keeps each rank's slice of its local tensors: same init everywhere
        model = case.make(True)
        ref = copy.deepcopy(model)
        plan = fully_shard_tied(model, mesh=mesh)
        batch = _global_batch(case)
        losses, grads = _train(model, case, _share(case, batch, rank, world), distributed=True)
        _put(tensors, f"{name}/grad", grads)
        _put(tensors, f"{name}/param", _params(model))
        path = out / f"fsdp-{name}.safetensors"
        tying.distributed.save(model, path)  # every rank calls it; rank 0 writes
        info[name] = {"plan": str(plan), "losses": losses, "sharded": _observe(model), "file_after_save": path.is_file()}
        if rank == 0:
            ref_losses, ref_grads = _train(ref, case, batch, distributed=False)
            _put(tensors, f"{name}/ref_grad", ref_grads)
            _put(tensors, f"{name}/ref_param", _params(ref))
            fresh = case.make(False)  # untied: the file's ties are re-established
            result = tying.load(fresh, path)
            _put(tensors, f"{name}/loaded", _params(fresh))
            info[name].update(ref_losses=ref_losses, loaded=_observe(fresh), applied=[t.describe() for t in result.applied_ties])

    # A failed write on rank 0 raises on every rank instead of leaving the others waiting.
    for rank_error in ("save_error", "load_error"):
        try:
            if rank_error == "save_error":
                tying.distributed.save(model, out / "no such folder" / "x.safetensors")
            else:
                tying.load(model, out / "fsdp-three_way.safetensors")  # the last model is still sharded
            info[rank_error] = None
        except (OSError, tying.CheckpointError) as exc:
            info[rank_error] = f"{type(exc).__name__}: {exc}"

    # Plain per-module fully_shard: the tied embedding and output layer land in two units.
    model = TransformerLanguageModel(SMALL_GPT)
    for module in [*model.blocks, model.wte, model.lm_head, model]:
        fully_shard(module, mesh=mesh)
    try:
        model(_global_batch(CASES["transformer"])[0][:, :-1])
        info["plain_error"] = None
    except ValueError as exc:
        info["plain_error"] = str(exc)


def main() -> None:
    scenario, rank, world, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    dist.init_process_group(
        "gloo", init_method=f"file://{out / (scenario + '.rendezvous')}", rank=rank, world_size=world, timeout=timedelta(seconds=300)
    )
    tensors: dict[str, torch.Tensor] = {}
    info: dict[str, object] = {}
    try:
        {"ddp": run_ddp, "fsdp": run_fsdp}[scenario](rank, world, out, tensors, info)
        save_file(tensors, str(out / f"{scenario}-rank{rank}.safetensors"))
        (out / f"{scenario}-rank{rank}.json").write_text(json.dumps(info))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)  # without destroying the group: the other rank may be blocked in a collective
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
