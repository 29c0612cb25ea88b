"""Train a tied Transformer LM with DDP or FSDP2 on every local process, then save and reload it.

    torchrun --standalone --nproc-per-node 2 examples/distributed_tied_lm.py --mode fsdp
    torchrun --standalone --nproc-per-node 2 examples/distributed_tied_lm.py --mode ddp

Runs on CPU (gloo) or, when every rank sees a GPU, on CUDA (nccl). Each rank trains on its own
batches of counting sequences. With ``--mode fsdp`` the model is sharded by
:func:`tying.distributed.fully_shard_tied` (the tied embedding and output layer in one unit, one
unit per block, the root last); :func:`tying.distributed.save` gathers it and rank 0 writes one checkpoint, which
rank 0 then loads into a fresh, unsharded and untied model: the file's tie comes back with it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

import tying
import tying.distributed
from tying.distributed import fully_shard_tied
from tying.models import TransformerConfig, TransformerLanguageModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["ddp", "fsdp"], default="fsdp")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("tied_lm.safetensors"))
    args = ap.parse_args()

    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= int(os.environ["LOCAL_WORLD_SIZE"])
    dist.init_process_group("nccl" if cuda else "gloo")  # rank and world size from torchrun's environment
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)

    config = TransformerConfig(vocab_size=1000, context_size=32, embedding_size=64, num_layers=2, num_heads=4)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = TransformerLanguageModel(config).to(device)  # declares tying.tie(self, "wte.weight", "lm_head.weight")
    if args.mode == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh

        plan = fully_shard_tied(model, mesh=init_device_mesh(device.type, (world,)))
        if rank == 0:
            print(f"FSDP units:\n{plan}")
        trained = model
    else:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model)  # registers the tied Parameter once
    optimizer = torch.optim.AdamW(trained.parameters(), lr=3e-3)

    generator = torch.Generator().manual_seed(1234 + rank)  # each rank its own data
    for step in range(args.steps):
        # Counting sequences (start, start + 1, ...) modulo the vocabulary: learnable in a few steps.
        start = torch.randint(0, config.vocab_size, (8, 1), generator=generator)
        tokens = ((start + torch.arange(config.context_size + 1)) % config.vocab_size).to(device)
        loss = F.cross_entropy(trained(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        dist.all_reduce(loss)  # for printing: the mean over ranks
        if rank == 0:
            print(f"step {step}: loss {loss.item() / world:.4f}")

    tying.verify(trained)  # every rank: the tie holds (one Parameter, sharded or not)
    tying.distributed.save(trained, args.out)  # every rank calls it; rank 0 writes
    if rank == 0:
        fresh = TransformerLanguageModel(replace(config, tie=False))  # untied
        result = tying.load(fresh, args.out)
        assert fresh.lm_head.weight is fresh.wte.weight
        print(f"saved {args.out}; reloaded unsharded with ties {[t.describe() for t in result.applied_ties]}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
