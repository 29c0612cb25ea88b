"""The engine under data parallelism: 2 CPU processes over gloo (DDP, and FSDP2 through
tying.distributed) train an LM recipe and match one process training on the same global batches.

Each rank runs this file's WORKER with a file rendezvous (no port to race for); the test process
trains the single-process reference and compares. Tolerances: a rank's gradient is the average
of two half-batch gradients where the reference takes the whole batch's mean at once, so values
agree to float32 rounding, not bitwise (dropout is off: ranks draw their own masks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tying
from tying.tasks.lm import LMData, LMTask, LMTrain, LossConfig, LSTMModel, TransformerModel
from tying.training import Trainer

WORKER = r"""
import json, sys
from datetime import timedelta
import torch, torch.distributed as dist
from test_parallel import make_task  # this file's folder is the worker's sys.path[0]
from tying.training import Trainer

rank, corpus, out, arch, parallel = int(sys.argv[1]), *sys.argv[2:]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2, timeout=timedelta(seconds=60))
task = make_task(corpus, arch, parallel)
data = task.load_data(None)
torch.manual_seed(0)
result = Trainer(task, task.build_model(data), data, f"{out}/run").fit()
if rank == 0:
    with open(f"{out}/history.json", "w") as f:
        json.dump(result.to_dict(), f)
dist.destroy_process_group()
"""


def make_task(corpus: str, arch: str, parallel: str = "ddp") -> LMTask:
    model = (
        LSTMModel(embedding_size=16, hidden_size=16, num_layers=1, dropout=0.0, tie=True)
        if arch == "lstm"
        else TransformerModel(arch="transformer", context_size=8, embedding_size=16, num_layers=2, num_heads=2, tie=True)
    )
    train = LMTrain(epochs=2, batch_size=8, eval_batch_size=4, bptt=8, optimizer="sgd", lr=0.5, momentum=0.9, clip=0.25, lr_schedule="plateau", max_batches=6, parallel=parallel)  # type: ignore[arg-type]
    return LMTask({"data": LMData(corpus=corpus), "model": model, "loss": LossConfig(), "train": train})


@pytest.mark.parametrize(("arch", "parallel"), [("lstm", "ddp"), ("transformer", "fsdp")])
def test_two_gloo_ranks_match_one_process_on_the_same_global_batches(tiny_corpus_dir: Path, tmp_path: Path, arch: str, parallel: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tying.__file__).parents[1]), str(Path(__file__).parent)]), "OMP_NUM_THREADS": "1"}
    ranks = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(r), str(tiny_corpus_dir), str(tmp_path), arch, parallel], env=env, stderr=subprocess.PIPE, text=True)
        for r in range(2)
    ]
    try:
        errors = [p.communicate(timeout=120)[1] for p in ranks]
    finally:
        for p in ranks:
            p.kill()
    assert [p.returncode for p in ranks] == [0, 0], errors
    parallel_run = json.loads((tmp_path / "history.json").read_text())

    task = make_task(str(tiny_corpus_dir), arch)
    data = task.load_data(None)
    torch.manual_seed(0)
    reference = Trainer(task, model := task.build_model(data), data, tmp_path / "single").fit().to_dict()
    for a, b in zip(parallel_run["history"], reference["history"], strict=True):
        assert a["train_tokens"] == b["train_tokens"]  # the global batches' tokens, counted over both ranks
        for key in ("train_loss", "valid_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    assert parallel_run["test"]["loss"] == pytest.approx(reference["test"]["loss"], rel=1e-5)
    # Rank 0 wrote the checkpoint: the tie intact, the weights those of the single process.
    saved = task.build_model(data)
    tying.load(saved, tmp_path / "run" / "best.safetensors")  # the reference model holds the best epoch's weights too
    head, embed = ("decoder", "encoder") if arch == "lstm" else ("lm_head", "wte")
    assert getattr(saved, head).weight is getattr(saved, embed).weight
    for (name, p), q in zip(saved.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
