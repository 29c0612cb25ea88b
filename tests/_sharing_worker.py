"""Two gloo CPU ranks train a shared-layer Transformer LM under FSDP2, for tests/test_sharing.py
(not collected by pytest).

    python tests/_sharing_worker.py OUT_DIR

Spawns the ranks with ``torch.multiprocessing`` (a failing rank stops the other and makes this
script exit non-zero). Every rank builds the same model (4 blocks over 2 sets, ``cycle_rev``, plus
the embedding/output tie), shards it with ``tying.distributed.fully_shard_tied``, trains it on its
half of one global batch and trains an unsharded copy on the whole batch (the reference); it
writes ``OUT_DIR/rank<R>.json``. ``tying.distributed.save`` from the sharded model is loaded by rank 0 into a
fresh, unshared model.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import tying
import tying.distributed
from tying.distributed import fully_shard_tied
from tying.models import TransformerConfig, TransformerLanguageModel
from tying.sharing import share_layers, summary_lines

WORLD = 2
STEPS = 3
CONFIG = TransformerConfig(vocab_size=37, context_size=8, embedding_size=16, num_layers=4, num_heads=2)


def _train(model: nn.Module, tokens: torch.Tensor, *, distributed: bool) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        value = loss.detach().clone()
        if distributed:  # the global batch's loss: the mean of the ranks' equal halves
            dist.all_reduce(value)
            value /= WORLD
        losses.append(value.item())
    return losses


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach()


def run(rank: int, out: Path) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{out / 'rendezvous'}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=120))
    torch.manual_seed(0)  # the same model on every rank
    model = TransformerLanguageModel(CONFIG)
    share_layers(model, "blocks", unique=2, strategy="cycle_rev")
    ref = copy.deepcopy(model)
    plan = fully_shard_tied(model, mesh=init_device_mesh("cpu", (WORLD,)))
    tokens = torch.randint(0, CONFIG.vocab_size, (4, 9), generator=torch.Generator().manual_seed(1234))
    half = tokens.shape[0] // WORLD
    losses = _train(model, tokens[rank * half : (rank + 1) * half], distributed=True)
    ref_losses = _train(ref, tokens, distributed=False)
    reference = dict(ref.named_parameters())
    diff = max((_full(p) - reference[name]).abs().max().item() for name, p in model.named_parameters())
    try:
        tying.verify(model)
        verdict = "ok"
    except tying.TieVerificationError as exc:
        verdict = str(exc)
    path = tying.distributed.save(model, out / "shared.safetensors")  # a collective; rank 0 writes
    gathered = {k: _full(v) for k, v in model.state_dict().items()}  # a collective too
    info = {
        "plan": str(plan).splitlines(),
        "losses": losses,
        "ref_losses": ref_losses,
        "max_param_diff": diff,
        "verify": verdict,
        "sharing": summary_lines(model),
        "block_params": [n for n, _ in ref.blocks[0].named_parameters()],
    }
    if rank == 0:
        torch.manual_seed(7)
        fresh = TransformerLanguageModel(CONFIG)
        tying.load(fresh, path)
        state = fresh.state_dict()
        info["loaded_sharing"] = summary_lines(fresh)
        info["loaded_equal"] = state.keys() == gathered.keys() and all(torch.equal(state[k], v) for k, v in gathered.items())
    (out / f"rank{rank}.json").write_text(json.dumps(info))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(Path(sys.argv[1]),), nprocs=WORLD, join=True)
