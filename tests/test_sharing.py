"""Cross-layer sharing (``tying.share_layers``): the assignment rules of Takase & Kiyono 2021,
parameter identity per set, gradients, checkpoints, meta-device materialisation, torch.compile,
a 2-process FSDP2 run, and the errors for bad requests.

Gradient equality is exact where a set has two uses (float addition of two terms does not depend
on order); with three or more uses autograd's summation order may differ from ours, so those
compare to float32 rounding (``rtol=1e-5, atol=1e-6``, as tests/test_distributed.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import tying
from tying import LayerSharing, TieError, layer_assignment, layer_sharing, share_layers
from tying.models import TransformerConfig, TransformerLanguageModel
from tying.sharing import summary_lines

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
WORKER = Path(__file__).with_name("_sharing_worker.py")
GPT = TransformerConfig(vocab_size=29, context_size=8, embedding_size=8, num_layers=4, num_heads=2)

# --------------------------------------------------------------------------- assignment rules

A, B, C, D, E, F_ = range(6)
TABLE = [
    (6, 1, "all", (A, A, A, A, A, A)),
    (6, 1, "cycle_rev", (A, A, A, A, A, A)),
    (6, 2, "sequence", (A, A, A, B, B, B)),
    (6, 2, "cycle", (A, B, A, B, A, B)),
    (6, 2, "cycle_rev", (A, B, A, B, B, A)),
    (6, 3, "sequence", (A, A, B, B, C, C)),
    (6, 3, "cycle", (A, B, C, A, B, C)),
    (6, 3, "cycle_rev", (A, B, C, C, B, A)),
    (6, 6, "sequence", (A, B, C, D, E, F_)),
    (6, 6, "cycle_rev", (A, B, C, D, E, F_)),
    (4, 2, "cycle_rev", (A, B, B, A)),
    (7, 3, "cycle", (A, B, C, A, B, C, A)),
    (12, 6, "sequence", (A, A, B, B, C, C, D, D, E, E, F_, F_)),
    (12, 6, "cycle_rev", (A, B, C, D, E, F_, F_, E, D, C, B, A)),
    # The paper's headline model (27.31 BLEU): ABCDEF ABCDEF FEDCBA.
    (18, 6, "cycle_rev", (A, B, C, D, E, F_, A, B, C, D, E, F_, F_, E, D, C, B, A)),
]


@pytest.mark.parametrize(("n", "m", "strategy", "expected"), TABLE)
def test_assignment_table(n: int, m: int, strategy: str, expected: tuple[int, ...]) -> None:
    assert layer_assignment(n, m, strategy) == expected
    if m not in (1, n):  # M = 1 and M = N read the same under every strategy
        assert LayerSharing("blocks", expected).strategy == strategy


@st.composite
def _requests(draw: st.DrawFn, max_layers: int = 48) -> tuple[int, int, str]:
    strategy = draw(st.sampled_from(["sequence", "cycle", "cycle_rev"]))
    n = draw(st.integers(1, max_layers))
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    m = draw(st.sampled_from(divisors) if strategy != "cycle" else st.integers(1, n))
    return n, m, strategy


@given(_requests())
def test_assignment_properties(request: tuple[int, int, str]) -> None:
    n, m, strategy = request
    a = layer_assignment(n, m, strategy)
    assert len(a) == n and set(a) == set(range(m))
    assert [a.index(s) for s in range(m)] == sorted(a.index(s) for s in range(m))  # sets numbered by first use
    if strategy == "sequence":
        assert a == tuple(s for s in range(m) for _ in range(n // m))
    elif strategy == "cycle":
        assert all(a[i] == i % m for i in range(n))
    else:
        head = max(m, n - m)  # cycle up to the final round, which runs backwards
        assert a[:head] == tuple(i % m for i in range(head))
        assert a[head:] == tuple(reversed(range(m)))[: n - head]
        assert all(a.count(s) == n // m for s in range(m))
    assert LayerSharing("x", a).assignment == a


@pytest.mark.parametrize(
    ("n", "m", "strategy", "message"),
    [
        (6, 4, "sequence", r"strategy 'sequence' needs unique to divide the number of layers: 6 layers over 4 sets; choose unique in \{1, 2, 3, 6\}"),
        (6, 4, "cycle_rev", r"strategy 'cycle_rev' needs unique to divide"),
        (4, 6, "cycle", r"unique=6 sets for 4 layers: there cannot be more sets than layers \(unique <= 4\)"),
        (4, 0, "cycle", r"unique=0: the number of parameter sets must be an integer of at least 1"),
        (4, True, "cycle", r"unique=True: the number of parameter sets must be an integer"),
        (4, 2, "all", r"strategy 'all' shares one set across every layer; got unique=2"),
        (4, 2, "cyclic", r"unknown sharing strategy 'cyclic'; choose one of sequence, cycle, cycle_rev, all"),
    ],
)
def test_bad_assignment_requests(n: int, m: int, strategy: str, message: str) -> None:
    with pytest.raises(TieError, match=message):
        layer_assignment(n, m, strategy)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- models


def _gpt(seed: int = 0, **changes) -> TransformerLanguageModel:
    torch.manual_seed(seed)
    return TransformerLanguageModel(replace(GPT, **changes))


def _tokens() -> torch.Tensor:
    return torch.randint(0, GPT.vocab_size, (3, 7), generator=torch.Generator().manual_seed(1))


def _loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def _block_params(model: nn.Module, i: int) -> dict[str, nn.Parameter]:
    return dict(model.blocks[i].named_parameters(remove_duplicate=False))


@pytest.mark.parametrize(("m", "strategy"), [(1, "all"), (2, "sequence"), (2, "cycle"), (2, "cycle_rev"), (4, "cycle")])
@pytest.mark.parametrize("share_norms", [True, False])
def test_layers_of_one_set_hold_one_parameter_each(m: int, strategy: str, share_norms: bool) -> None:
    model = _gpt()
    result = share_layers(model, "blocks", unique=m, strategy=strategy, share_norms=share_norms)
    a = layer_assignment(4, m, strategy)
    for i in range(4):
        for j in range(4):
            for name, p in _block_params(model, i).items():
                norm = name.startswith(("ln_1", "ln_2"))
                same = i == j or (a[i] == a[j] and (share_norms or not norm))
                assert (p is _block_params(model, j)[name]) == same, (i, j, name)
    tying.verify(model)
    per_block = sum(p.numel() for n, p in _block_params(_gpt(), 0).items() if share_norms or not n.startswith("ln"))
    assert tying.count_parameters(model) == tying.count_parameters(_gpt()) - (4 - m) * per_block  # N - M layers read a set
    has_sharing = m < 4
    expected = [LayerSharing("blocks", a, share_norms)] if has_sharing else []
    assert layer_sharing(model) == expected and (result == expected[0] if has_sharing else result.assignment == a)


def test_summary_line_and_repeat_call() -> None:
    model = _gpt()
    share_layers(model, "blocks", unique=2, strategy="cycle_rev", share_norms=False)
    ties = list(tying.get_spec(model).ties)
    share_layers(model, "blocks", unique=2, strategy="cycle_rev", share_norms=False)  # no-op
    assert tying.get_spec(model).ties == ties
    assert summary_lines(model) == ["blocks: 4 layers over 2 sets (cycle_rev): A B B A; norms per layer"]
    one_set = _gpt()
    share_layers(one_set, "blocks", unique=1, strategy="sequence")
    assert summary_lines(one_set) == ["blocks: 4 layers over 1 set (all): A A A A"]  # not "1 sets"
    assert summary_lines(_gpt()) == []
    lone = _gpt()
    tying.tie(lone, "blocks.0.mlp.fc.weight", "blocks.1.mlp.fc.weight")  # one cross-layer tie is not layer sharing
    assert layer_sharing(lone) == []


@pytest.mark.parametrize("strategy", ["sequence", "cycle", "cycle_rev"])
def test_a_set_gets_the_sum_of_its_uses_gradients(strategy: str) -> None:
    shared = _gpt()
    share_layers(shared, "blocks", unique=2, strategy=strategy)  # two uses per set: sums are exact
    unshared = _gpt(seed=5)
    unshared.load_state_dict(shared.state_dict())  # every layer holds its set's values, as its own tensors
    tokens = _tokens()
    _loss(shared, tokens).backward()
    _loss(unshared, tokens).backward()
    a = layer_assignment(4, 2, strategy)
    for s in range(2):
        uses = [i for i in range(4) if a[i] == s]
        for name, p in _block_params(shared, uses[0]).items():
            expected = _block_params(unshared, uses[0])[name].grad + _block_params(unshared, uses[1])[name].grad
            assert torch.equal(p.grad, expected), name


def test_three_uses_sum_to_float_rounding() -> None:
    shared = _gpt(num_layers=6)
    share_layers(shared, "blocks", unique=2, strategy="cycle")
    unshared = _gpt(seed=5, num_layers=6)
    unshared.load_state_dict(shared.state_dict())
    _loss(shared, _tokens()).backward()
    _loss(unshared, _tokens()).backward()
    for name, p in _block_params(shared, 1).items():
        torch.testing.assert_close(p.grad, sum(_block_params(unshared, i)[name].grad for i in (1, 3, 5)), **TOLERANCE)


def test_checkpoint_round_trip_into_a_fresh_unshared_model(tmp_path: Path) -> None:
    model = _gpt()
    share_layers(model, "blocks", unique=2, strategy="cycle_rev")
    path = tying.save(model, tmp_path / "shared.safetensors")
    fresh = _gpt(seed=3)
    result = tying.load(fresh, path)
    assert set(result.applied_ties) == set(tying.get_spec(model).ties) - {tying.Tie("wte.weight", "lm_head.weight")}
    assert layer_sharing(fresh) == layer_sharing(model) == [LayerSharing("blocks", (0, 1, 1, 0))]
    assert _block_params(fresh, 3)["attn.qkv.weight"] is _block_params(fresh, 0)["attn.qkv.weight"]
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    info = tying.read_checkpoint(path)
    counts = tying.summary(model)
    assert sum(t.nbytes for t in info.tensors) == counts.unique_bytes  # each set stored once
    assert not any(name.startswith(("blocks.2.", "blocks.3.")) for name in (t.name for t in info.tensors))
    torch.testing.assert_close(_loss(fresh, _tokens()), _loss(model, _tokens()), rtol=0, atol=0)


def test_meta_build_and_materialize_keep_the_sets() -> None:
    with torch.device("meta"):
        model = TransformerLanguageModel(GPT)
    share_layers(model, "blocks", unique=2, strategy="sequence")
    tying.materialize(model, "cpu")
    tying.verify(model)
    assert not any(p.is_meta for p in model.parameters())
    assert _block_params(model, 1)["mlp.fc.weight"] is _block_params(model, 0)["mlp.fc.weight"]
    assert not torch.equal(_block_params(model, 2)["mlp.fc.weight"], _block_params(model, 0)["mlp.fc.weight"])
    assert layer_sharing(model) == [LayerSharing("blocks", (0, 0, 1, 1))]
    assert torch.isfinite(_loss(model, _tokens()))


class _Blocks(nn.Module):
    """A ModuleList of small residual blocks (Linear + LayerNorm), cheap to compile."""

    def __init__(self, n: int = 4, dim: int = 6) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim)) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + torch.tanh(layer(x))
        return x


@given(_requests(max_layers=12), st.booleans())
def test_any_valid_request_shares_exactly_the_assigned_layers(request: tuple[int, int, str], share_norms: bool) -> None:
    n, m, strategy = request
    model = _Blocks(n=n, dim=2)
    share_layers(model, "layers", unique=m, strategy=strategy, share_norms=share_norms)  # type: ignore[arg-type]
    a = layer_assignment(n, m, strategy)  # type: ignore[arg-type]
    for i in range(n):
        for j in range(n):
            assert (model.layers[i][1].weight is model.layers[j][1].weight) == (a[i] == a[j])
            assert (model.layers[i][0].weight is model.layers[j][0].weight) == (i == j or (share_norms and a[i] == a[j]))
    assert layer_sharing(model) == ([LayerSharing("layers", a, share_norms)] if m < n else [])
    tying.verify(model)


def test_compiled_model_gives_eager_losses_and_gradients() -> None:
    torch.manual_seed(0)
    eager = _Blocks()
    share_layers(eager, "layers", unique=2, strategy="cycle_rev")
    compiled_model = _Blocks()
    compiled_model.load_state_dict(eager.state_dict())
    share_layers(compiled_model, "layers", unique=2, strategy="cycle_rev")
    compiled = torch.compile(compiled_model, backend="aot_eager", fullgraph=True)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    losses: dict[nn.Module, list[torch.Tensor]] = {eager: [], compiled: []}
    for model, seen in losses.items():
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            loss = model(x).square().mean()
            loss.backward()
            opt.step()
            seen.append(loss.detach())
    assert torch.equal(torch.stack(losses[compiled]), torch.stack(losses[eager]))
    assert torch.equal(compiled(x), eager(x))
    for (name, p), (_, q) in zip(eager.named_parameters(), compiled_model.named_parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad), name
    tying.verify(compiled)
    assert compiled_model.layers[3][1].weight is compiled_model.layers[0][1].weight
    assert layer_sharing(compiled) == [LayerSharing("layers", (0, 1, 1, 0))]


# --------------------------------------------------------------------------- errors


class _Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)])
        self.head = nn.Linear(4, 4)


def test_bad_requests_are_refused_and_change_nothing(snapshot) -> None:
    model = _gpt()
    before = snapshot(model)
    cases = [
        (dict(path="blockz", unique=2, strategy="cycle"), r"no module 'blockz' in TransformerLanguageModel; its ModuleLists: 'blocks'"),
        (dict(path="ln_f", unique=1), r"'ln_f' is a LayerNorm, not an nn.ModuleList of layers; its ModuleLists: 'blocks'"),
        (dict(path="blocks", unique=3, strategy="sequence"), r"strategy 'sequence' needs unique to divide the number of layers: 4 layers over 3 sets"),
        (dict(path="blocks", unique=5, strategy="cycle"), r"unique=5 sets for 4 layers"),
        (dict(path="blocks", unique=0, strategy="cycle"), r"unique=0: the number of parameter sets must be an integer of at least 1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(TieError, match=message):
            share_layers(model, kwargs.pop("path"), **kwargs)
        before.assert_unchanged(model)


def test_layers_that_differ_are_named() -> None:
    with pytest.raises(TieError, match=r"layers of 'layers' differ in structure: 'weight' has shape \[3, 4\] in layer 2 but \[4, 4\] in layer 0"):
        share_layers(_Odd(), "layers")
    model = _Blocks(n=2)
    model.layers[1].append(nn.Linear(6, 6))
    with pytest.raises(TieError, match=r"differ in structure: layer 1 has '2.weight', which layer 0 lacks"):
        share_layers(model, "layers")
    model = _Blocks(n=2)
    model.layers[1][1].bias = None
    with pytest.raises(TieError, match=r"differ in structure: layer 1 has no '1.bias', which layer 0 has"):
        share_layers(model, "layers")
    model = _Blocks(n=2)
    model.layers[1].double()
    with pytest.raises(TieError, match=r"'0.weight' has dtype torch.float64 in layer 1 but torch.float32 in layer 0"):
        share_layers(model, "layers")


def test_one_module_twice_and_existing_ties_are_refused(snapshot) -> None:
    block = nn.Linear(4, 4)
    stack = nn.Module()
    stack.layers = nn.ModuleList([block, block])
    with pytest.raises(TieError, match=r"layers 0 and 1 of 'layers' are one module object; build 2 separate layers"):
        share_layers(stack, "layers")
    model = _gpt()
    tying.tie(model, "blocks.1.mlp.fc.bias", "blocks.2.mlp.fc.bias")
    before = snapshot(model)
    with pytest.raises(TieError, match=r"cannot share the layers of 'blocks': 'blocks.2.mlp.fc.bias' is already in the tie 'blocks.1.mlp.fc.bias -> blocks.2.mlp.fc.bias'; call tying.untie\(model, 'blocks.2.mlp.fc.bias'\) first"):
        share_layers(model, "blocks", unique=2, strategy="cycle")  # ABAB: blocks.2 would read blocks.0
    before.assert_unchanged(model)
    ae = _Blocks(n=2)
    torch.nn.utils.parametrizations.weight_norm(ae.layers[1][1])
    with pytest.raises(TieError, match=r"layers.1.1.parametrizations.weight.original0 belongs to a parametrization; share the layers before"):
        share_layers(ae, "layers")


# --------------------------------------------------------------------------- FSDP2, 2 processes


@pytest.mark.slow
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo")
def test_fsdp2_trains_a_shared_layer_lm_like_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    r0, r1 = ranks
    torch.testing.assert_close(r0["losses"], r0["ref_losses"], **TOLERANCE)
    assert r1["losses"] == r0["losses"]
    # Every tie group lies whole in one FSDP unit: the embedding/output pair and each parameter of a set.
    planned = {tuple(g.split(", ")) for line in r0["plan"] if "  # ties " in line for g in line.split("  # ties ")[1].split("; ")}
    assert planned == {("wte.weight", "lm_head.weight")} | {(f"blocks.{i}.{n}", f"blocks.{j}.{n}") for i, j in ((0, 3), (1, 2)) for n in r0["block_params"]}
    assert r0["plan"][-1] == "fully_shard(<root>)"
    for rank in ranks:
        assert rank["verify"] == "ok" and rank["sharing"] == ["blocks: 4 layers over 2 sets (cycle_rev): A B B A"]
        assert rank["max_param_diff"] <= 1e-5
    assert r0["loaded_sharing"] == ["blocks: 4 layers over 2 sets (cycle_rev): A B B A"]
    assert r0["loaded_equal"]


def test_summary_shows_the_layer_assignment() -> None:
    from tying.models import TransformerConfig, TransformerLanguageModel

    m = TransformerLanguageModel(TransformerConfig(vocab_size=50, embedding_size=16, num_layers=6, num_heads=2, context_size=8))
    assert tying.summary(m).sharing == []
    tying.share_layers(m, "blocks", unique=3, strategy="cycle_rev")
    s = tying.summary(m)
    assert s.sharing == ["blocks: 6 layers over 3 sets (cycle_rev): A B C C B A"]
    assert str(s).endswith("blocks: 6 layers over 3 sets (cycle_rev): A B C C B A")
