"""Ties under data parallelism: shard planning (in process), and 2-process gloo CPU runs of DDP and
FSDP2 (``fully_shard``) compared with a single process training on the same global batch.

The multi-process runs launch ``_distributed_worker.py`` once per scenario (all cases of a
scenario share one launch) with a file rendezvous (no port to race for), a deadline, and every
rank killed if one fails or the deadline passes; the tests below read what the ranks wrote.

Tolerances: a rank's gradient is the average of two half-batch gradients (all-reduce or
reduce-scatter) where the reference sums the whole batch at once, so values agree to float32
rounding, not bitwise: ``rtol=1e-5, atol=1e-6`` (measured differences are below 1e-6). Values
that every rank receives from one collective (DDP's averaged gradients, a gathered parameter)
and a checkpoint's round trip are compared exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

import tying
from tying.distributed import ShardPlan, ShardUnit, shard_groups
from tying.errors import TieError
from tying.models import TransformerConfig, TransformerLanguageModel

WORKER = Path(__file__).with_name("_distributed_worker.py")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distributed_tied_lm.py"
WORLD_SIZE = 2
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


# --------------------------------------------------------------------------- shard_groups


def test_tied_embedding_and_head_form_one_unit(models) -> None:
    plan = shard_groups(models.tied_lm())
    assert plan == ShardPlan((ShardUnit(("embed", "head"), (("embed.weight", "head.weight"),)),))
    assert str(plan) == "fully_shard([embed, head])  # ties embed.weight, head.weight\nfully_shard(<root>)"


def test_transformer_blocks_are_default_units_beside_the_tie_unit() -> None:
    model = TransformerLanguageModel(TransformerConfig(vocab_size=10, context_size=4, embedding_size=8, num_layers=3, num_heads=2))
    plan = shard_groups(model)
    assert [u.modules for u in plan.units] == [("wte", "lm_head"), ("blocks.0",), ("blocks.1",), ("blocks.2",)]
    assert plan.units[0].ties == (("wte.weight", "lm_head.weight"),) and plan.root_ties == ()


def test_transposed_tie_unit_skips_the_parametrization_list(models) -> None:
    # ParametrizationList is a ModuleList, but not a block to shard on its own.
    assert shard_groups(models.tied_ae()).units == (ShardUnit(("enc", "dec"), (("enc.weight", "dec.weight"),)),)


def test_cross_layer_tie_merges_the_layers_it_spans(models) -> None:
    m = models.Stack(n=4)
    tying.tie(m, "layers.0.weight", "layers.1.weight", "layers.2.weight")
    plan = shard_groups(m)
    assert [u.modules for u in plan.units] == [("layers.0", "layers.1", "layers.2"), ("layers.3",)]


def test_tie_inside_two_blocks_is_a_unit_sharded_before_them() -> None:
    config = TransformerConfig(vocab_size=10, context_size=4, embedding_size=8, num_layers=2, num_heads=2, tie=False)
    model = TransformerLanguageModel(config)
    tying.tie(model, "blocks.0.attn.qkv.weight", "blocks.1.attn.qkv.weight")
    assert [u.modules for u in shard_groups(model).units] == [("blocks.0.attn.qkv", "blocks.1.attn.qkv"), ("blocks.0",), ("blocks.1",)]


def test_tie_to_a_root_parameter_is_left_to_the_root(models) -> None:
    m = models.Stack(n=2)
    m.scale = nn.Parameter(torch.ones(4))
    tying.tie(m, "scale", "layers.1.bias")
    plan = shard_groups(m)
    assert [u.modules for u in plan.units] == [("layers.0",)]  # layers.1 is dissolved into the root unit
    assert plan.root_ties == (("scale", "layers.1.bias"),)


class _Crossed(nn.Module):
    """Two ties whose units would each have to be sharded before the other."""

    def __init__(self) -> None:
        super().__init__()
        self.x, self.z = nn.Module(), nn.Module()
        self.x.y, self.z.w = nn.Linear(3, 3), nn.Linear(3, 3)
        self.x.p, self.z.q = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3, 3))


def test_units_nested_in_each_other_crosswise_are_merged() -> None:
    m = _Crossed()
    tying.tie(m, "x.y.weight", "z.q")  # unit [x.y, z] must precede x ...
    tying.tie(m, "x.p", "z.w.bias")  # ... and unit [x, z.w] must precede z
    plan = shard_groups(m)
    assert plan.units == (ShardUnit(("x", "z"), (("x.p", "z.w.bias"), ("x.y.weight", "z.q"))),)


def test_explicit_units_and_their_errors(models) -> None:
    m = models.tied_lm()
    assert [u.modules for u in shard_groups(m, units=["proj"]).units] == [("embed", "head"), ("proj",)]
    assert shard_groups(m, units=[m.proj]) == shard_groups(m, units=["proj"])
    with pytest.raises(TieError, match=r"shard unit 'nope' is not a submodule of TinyLM"):
        shard_groups(m, units=["nope"])
    with pytest.raises(TieError, match=r"the root is always the last unit"):
        shard_groups(m, units=[m])


def test_views_of_one_memory_are_refused(models) -> None:
    m = models.TinyLM()
    m.head.weight = nn.Parameter(m.embed.weight.data)  # distinct Parameters, one storage
    with pytest.raises(TieError, match=r"embed.weight, head.weight are distinct Parameters over the same memory; FSDP shards"):
        shard_groups(m)


def test_importing_tying_does_not_import_fsdp() -> None:
    code = "import sys, tying, tying.distributed; print('torch.distributed.fsdp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- 2-process runs


def _launch(scenario: str, out: Path, timeout: float = 600.0) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """Run ``scenario`` on ``WORLD_SIZE`` local processes; fail with the failing rank's log if one
    exits non-zero or the run outlives ``timeout``, killing the others either way."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    logs = [out / f"{scenario}-rank{r}.log" for r in range(WORLD_SIZE)]
    procs = []
    for rank, log in enumerate(logs):
        with open(log, "w") as fh:
            cmd = [sys.executable, str(WORKER), scenario, str(rank), str(WORLD_SIZE), str(out)]
            procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env))
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.returncode not in (None, 0) for p in procs):
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [r for r, p in enumerate(procs) if p.returncode != 0]
    if failed:  # every failing rank's log: the first to fail may not be rank 0
        why = [f"rank {r} {'was killed (deadline)' if procs[r].returncode < 0 else f'exited with {procs[r].returncode}'}" for r in failed]
        tails = "".join(f"\n--- rank {r} log ---\n{logs[r].read_text()[-4000:]}" for r in failed)
        pytest.fail(f"{scenario} failed ({timeout:.0f} s limit): {', '.join(why)}{tails}")
    return [
        (load_file(out / f"{scenario}-rank{r}.safetensors"), json.loads((out / f"{scenario}-rank{r}.json").read_text()))
        for r in range(WORLD_SIZE)
    ]


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    out = {k.removeprefix(f"{prefix}/"): v for k, v in tensors.items() if k.startswith(f"{prefix}/")}
    assert out, f"no tensors under {prefix!r}"
    return out


def _assert_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], exact: bool = False) -> None:
    assert actual.keys() == expected.keys()
    for k in expected:
        if exact:
            assert torch.equal(actual[k], expected[k]), k
        else:
            torch.testing.assert_close(actual[k], expected[k], **TOLERANCE, msg=lambda m, k=k: f"{k}: {m}")


needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo")
DDP_CASES = ["shared", "transposed", "cross_layer", "three_way", "lstm"]
FSDP_CASES = ["transformer", "transposed", "cross_layer", "three_way"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict[str, torch.Tensor], dict]]:
    return _launch("ddp", tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[dict[str, torch.Tensor], dict]], Path]:
    out = tmp_path_factory.mktemp("fsdp")
    return _launch("fsdp", out), out


@needs_gloo
@pytest.mark.slow
@pytest.mark.parametrize("case", DDP_CASES)
def test_ddp_matches_one_process_on_the_global_batch(ddp_run, case: str) -> None:
    (t0, i0), (t1, i1) = ddp_run
    # DDP broadcast rank 0's initialisation (rank 1 drew its own) without untying anything.
    _assert_close(_section(t1, f"{case}/init"), _section(t0, f"{case}/init"), exact=True)
    _assert_close(_section(t0, f"{case}/grad"), _section(t0, f"{case}/ref_grad"))
    _assert_close(_section(t1, f"{case}/grad"), _section(t0, f"{case}/grad"), exact=True)
    _assert_close(_section(t0, f"{case}/param"), _section(t0, f"{case}/ref_param"))
    _assert_close(_section(t1, f"{case}/param"), _section(t0, f"{case}/param"), exact=True)
    torch.testing.assert_close(i0[case]["losses"], i0[case]["ref_losses"], **TOLERANCE)


@needs_gloo
@pytest.mark.slow
@pytest.mark.parametrize("case", DDP_CASES)
def test_ddp_keeps_the_tie_on_every_rank(ddp_run, case: str) -> None:
    for _, info in ddp_run:
        seen = info[case]
        # Through the DDP wrapper (paths without "module.") and on the wrapped model alike.
        assert seen["wrapped"] == seen["module"]
        assert seen["module"]["verify"] == "ok"
        groups = seen["module"]["groups"]
        assert groups and all(kind == "shared" and len(paths) >= 2 for paths, kind in groups)  # one Parameter per group


@needs_gloo
@pytest.mark.slow
@pytest.mark.parametrize("case", FSDP_CASES)
def test_fsdp_tied_trains_like_one_process(fsdp_run, case: str) -> None:
    ((t0, i0), (t1, i1)), _ = fsdp_run
    torch.testing.assert_close(i0[case]["losses"], i0[case]["ref_losses"], **TOLERANCE)
    assert i1[case]["losses"] == i0[case]["losses"]
    _assert_close(_section(t0, f"{case}/grad"), _section(t0, f"{case}/ref_grad"))
    _assert_close(_section(t0, f"{case}/param"), _section(t0, f"{case}/ref_param"))  # uneven shards included
    _assert_close(_section(t1, f"{case}/param"), _section(t0, f"{case}/param"), exact=True)
    for _, info in fsdp_run[0]:
        assert info[case]["sharded"]["verify"] == "ok"
        assert info[case]["sharded"]["groups"] == i0[case]["loaded"]["groups"]
        assert all(kind == "shared" for _, kind in info[case]["sharded"]["groups"])


@needs_gloo
@pytest.mark.slow
def test_fsdp_plans(fsdp_run) -> None:
    (_, i0), _ = fsdp_run[0]
    assert i0["transformer"]["plan"].splitlines() == [
        "fully_shard([wte, lm_head])  # ties wte.weight, lm_head.weight",
        "fully_shard([blocks.0.mlp.fc, blocks.1.mlp.fc])  # ties blocks.0.mlp.fc.weight, blocks.1.mlp.fc.weight",
        "fully_shard(blocks.0)",
        "fully_shard(blocks.1)",
        "fully_shard(<root>)",
    ]
    assert i0["transposed"]["plan"].splitlines()[0] == "fully_shard([enc, dec])  # ties enc.weight, dec.weight"


@needs_gloo
@pytest.mark.slow
@pytest.mark.parametrize("case", FSDP_CASES)
def test_save_from_sharded_model_loads_unsharded_with_ties(fsdp_run, case: str) -> None:
    ((t0, i0), _), out = fsdp_run
    assert all(info[case]["file_after_save"] for _, info in fsdp_run[0])  # save returned once the file existed
    # The file holds the gathered values exactly, each tie group once, with its spec.
    _assert_close(_section(t0, f"{case}/loaded"), _section(t0, f"{case}/param"), exact=True)
    assert i0[case]["loaded"]["verify"] == "ok"
    ckpt = tying.read_checkpoint(out / f"fsdp-{case}.safetensors")
    assert [t.describe() for t in ckpt.spec.ties] == i0[case]["applied"]  # the untied model got every tie from the file
    assert len(ckpt.aliases) == sum(len(paths) - 1 for paths, _ in i0[case]["loaded"]["groups"])  # each group stored once


@needs_gloo
@pytest.mark.slow
def test_plain_per_module_fully_shard_raises_and_the_helper_avoids_it(fsdp_run) -> None:
    for _, info in fsdp_run[0]:
        assert "Parameter 'lm_head.weight' is shared with a parameter already managed by another FSDP group" in info["plain_error"]
        assert info["transformer"]["sharded"]["verify"] == "ok"  # fully_shard_tied on the same model trained


@needs_gloo
@pytest.mark.slow
def test_documented_fsdp_example_runs_under_torchrun(tmp_path: Path) -> None:
    out = tmp_path / "lm.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD_SIZE)]
    cmd += [str(EXAMPLE), "--mode", "fsdp", "--steps", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    # Its own session, so a timeout kills torchrun's workers too, not only torchrun.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"the example did not finish in 600 s:\n{log[-6000:]}")
    assert proc.returncode == 0, log[-6000:]
    assert "fully_shard([wte, lm_head])  # ties wte.weight, lm_head.weight" in log
    assert "reloaded unsharded with ties ['wte.weight -> lm_head.weight']" in log
    assert tying.read_checkpoint(out).spec.ties == [tying.Tie("wte.weight", "lm_head.weight")]


@needs_gloo
@pytest.mark.slow
def test_sharded_save_failure_reaches_every_rank_and_load_is_refused(fsdp_run) -> None:
    (_, i0), (_, i1) = fsdp_run[0]
    assert i0["save_error"].startswith("FileNotFoundError: cannot write") and "does not exist" in i0["save_error"]
    assert i1["save_error"].startswith("CheckpointError: rank 0 failed to write")
    for info in (i0, i1):
        assert "cannot load" in info["load_error"]
        assert "into a sharded (DTensor) model: load it into the model before fully_shard" in info["load_error"]


def test_default_units_skip_none_entries_of_a_module_list() -> None:
    """A ModuleList may hold None (skipped layers); the plan used to name 'layers.1', a unit the
    user never gave, and refuse it."""
    m = nn.Module()
    m.layers = nn.ModuleList([nn.Linear(3, 3), None, nn.Linear(3, 3)])
    m.head = nn.Linear(3, 3)
    tying.tie(m, "layers.0.weight", "layers.2.weight")
    plan = shard_groups(m)
    assert [u.modules for u in plan.units] == [("layers.0", "layers.2")]
