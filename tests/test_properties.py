"""Property-based tests: random module trees (nested ModuleDict / ModuleList of Linear, Embedding
and LayerNorm with small, often coinciding shapes, and None entries as nn.Module allows them:
a skipped layer in a ModuleList, a None in a ModuleDict or on the root), random tie specs (n-ary identity ties and
transposed ties), random sequences of operations (save/load, deepcopy, ``.to(dtype)``,
materialize, ``load_state_dict(assign=True)``, untie, break and retie, ``tying.resize_vocab``,
``torch.compile``). After every step: ``tying.verify`` passes, every declared target is its source
(or reads its transpose), and every value is what it was (or, after a resize, its kept part is).

Example counts scale with the hypothesis profile loaded in ``tests/conftest.py``
(``HYPOTHESIS_PROFILE=ci`` by default; ``HYPOTHESIS_PROFILE=long`` for many more).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

import tying
from tying import TieError


def _examples(fraction: float) -> int:
    return max(5, int(settings.default.max_examples * fraction))


def _settings(fraction: float) -> settings:
    return settings(
        max_examples=_examples(fraction),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- trees

DIMS = st.sampled_from([2, 3])
LEAVES = st.one_of(
    st.tuples(st.just("linear"), DIMS, DIMS, st.booleans()),
    st.tuples(st.just("embedding"), st.sampled_from([2, 3, 5]), DIMS),
    st.tuples(st.just("norm"), DIMS),
    st.just(("none",)),  # a None entry (x-transformers' unused norms, a pruned layer): every walker must skip it
)
NAMES = st.sampled_from(["enc", "dec", "a", "b", "out"])


def _containers(children):
    return st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: ("list", tuple(xs))),
        st.dictionaries(NAMES, children, min_size=1, max_size=3).map(lambda d: ("dict", tuple(sorted(d.items())))),
    )


def _has_module(node) -> bool:
    return node[0] in ("linear", "embedding", "norm") or (
        node[0] in ("list", "dict") and any(_has_module(c[1] if node[0] == "dict" else c) for c in node[1])
    )


# At least one real layer, so that the forward has an output to differentiate.
TREES = (
    st.dictionaries(NAMES, st.recursive(LEAVES, _containers, max_leaves=4), min_size=2, max_size=4)
    .map(lambda d: ("dict", tuple(sorted(d.items()))))
    .filter(_has_module)
)


def _build_node(node) -> nn.Module | None:
    kind = node[0]
    if kind == "none":
        return None
    if kind == "linear":
        return nn.Linear(node[1], node[2], bias=node[3])
    if kind == "embedding":
        return nn.Embedding(node[1], node[2])
    if kind == "norm":
        m = nn.LayerNorm(node[1])
        with torch.no_grad():  # non-constant values, so copies are distinguishable
            m.weight.normal_()
            m.bias.normal_()
        return m
    if kind == "list":
        return nn.ModuleList(_build_node(c) for c in node[1])
    return nn.ModuleDict({k: _build_node(c) for k, c in node[1]})


WIDTH = 8  # of the forward's input: wider than any Linear, resized ones included


class Tree(nn.ModuleDict):
    """The root of a random tree. Its forward runs every leaf, sized by the modules' current
    attributes (which ``resize_vocab`` updates), and returns every output."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for m in self.modules():
            if isinstance(m, nn.Linear):
                outs.append(m(x[:, : m.in_features]))
            elif isinstance(m, nn.Embedding):
                outs.append(m(torch.arange(m.num_embeddings)))
            elif isinstance(m, nn.LayerNorm):
                outs.append(m(x[:, : m.normalized_shape[0]]))
        return outs


def build(tree, seed: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> nn.Module:
    """The same tree always has the same paths and shapes; ``seed`` decides the values."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            model = Tree(_build_node(tree))
    return model.to(dtype)


def describe(module: nn.Module | None):
    """The tree ``module`` is now: what :func:`build` takes to make another one of its shapes."""
    if module is None:
        return ("none",)
    if isinstance(module, nn.Linear):
        return ("linear", module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, nn.Embedding):
        return ("embedding", module.num_embeddings, module.embedding_dim)
    if isinstance(module, nn.LayerNorm):
        return ("norm", *module.normalized_shape)
    if isinstance(module, nn.ModuleList):
        return ("list", tuple(describe(c) for c in module))
    return ("dict", tuple((k, describe(c)) for k, c in module.items()))


def declare(model: nn.Module, ties) -> None:
    for t in ties:
        (tying.tie(model, t.source, t.target) if t.transform is None else tying.tie_transposed(model, t.source, t.target))


def read(model: nn.Module, path: str) -> torch.Tensor:
    """The tensor ``path`` reads (through a parametrization if there is one)."""
    owner, _, name = path.rpartition(".")
    with torch.no_grad():
        return getattr(model.get_submodule(owner) if owner else model, name)


def values(model: nn.Module, paths) -> dict[str, torch.Tensor]:
    return {p: read(model, p).detach().clone() for p in paths}


# --------------------------------------------------------------------------- invariants


def check(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    report = tying.verify(model, raise_error=False)
    assert report.broken == [], str(report)
    assert report.undeclared == [], str(report)
    for t in tying.get_spec(model).ties:
        src = model.get_parameter(t.source)
        owner, _, name = t.target.rpartition(".")
        mod = model.get_submodule(owner)
        if t.transform is None:
            assert getattr(mod, name) is src, t
        else:
            assert mod.parametrizations[name].original is src, t
            assert torch.equal(read(model, t.target), src.detach().transpose(0, 1)), t
    for path, value in expected.items():
        got = read(model, path)
        assert got.dtype == value.dtype, path
        assert torch.equal(got, value), path
    # Accounting agrees with the spec: each tie group is counted once.
    assert tying.summary(model).unique_parameters == sum(p.numel() for p in model.parameters())


def _snapshot(model: nn.Module):
    return (
        [(k, p, p.detach().clone()) for k, p in model.named_parameters(remove_duplicate=False)],
        list(tying.get_spec(model).ties),
    )


def _assert_unchanged(model: nn.Module, snap) -> None:
    params, ties = snap
    now = list(model.named_parameters(remove_duplicate=False))
    assert [k for k, _ in now] == [k for k, _, _ in params]
    for (_, p, v), (_, q) in zip(params, now, strict=True):
        assert p is q and torch.equal(q, v)
    assert tying.get_spec(model).ties == ties


def draw_ties(data, model: nn.Module) -> None:
    """Declare random ties. Mostly requests the spec allows; the others (a target tied twice, a
    group source as target, ...) must raise TieError and change nothing."""
    shapes = {p: tuple(t.shape) for p, t in model.named_parameters()}
    paths = sorted(shapes)
    # (source, transposed) requests for which some other path has the right shape.
    requests = [
        (p, tr)
        for p in paths
        for tr in ((False, True) if len(shapes[p]) == 2 else (False,))
        if any(q != p and shapes[q] == (shapes[p][::-1] if tr else shapes[p]) for q in paths)
    ]
    if not requests:
        return
    for _ in range(data.draw(st.integers(1, 5), label="n_ties")):
        spec = tying.get_spec(model)
        source, transposed = data.draw(st.sampled_from(requests), label="request")
        want = shapes[source][::-1] if transposed else shapes[source]
        candidates = [p for p in paths if shapes[p] == want and p != source]
        if data.draw(st.integers(0, 4), label="only_free_targets") > 0:
            candidates = [p for p in candidates if p not in spec.paths()]
        if not candidates:
            continue
        if transposed:
            targets = [data.draw(st.sampled_from(candidates), label="target")]
        else:
            targets = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3, unique=True), label="targets")
        snap = _snapshot(model)
        try:
            if transposed:
                tying.tie_transposed(model, source, targets[0])
            else:
                tying.tie(model, source, *targets)
        except TieError:
            _assert_unchanged(model, snap)


# --------------------------------------------------------------------------- operations


def op_save_load(model, tree, dtype, expected, folder: Path, step: int):
    path = tying.save(model, folder / f"m{step}.safetensors")
    raw = path.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    unique = sum(p.numel() * p.element_size() for p in model.parameters())
    assert len(raw) == unique + 8 + header
    fresh = build(tree, seed=1000 + step, dtype=dtype)  # identical tree, other values, no ties
    result = tying.load(fresh, path)
    assert result.applied_ties == tying.get_spec(model).ties
    assert tying.get_spec(fresh).ties == tying.get_spec(model).ties
    return fresh


def op_deepcopy(model, *_):
    return copy.deepcopy(model)


def op_materialize(model, tree, dtype, expected, folder, step):
    meta = build(tree, seed=0, dtype=dtype, device="meta")
    declare(meta, tying.get_spec(model).ties)
    tying.materialize(meta, "cpu")
    check(meta, {})
    meta.load_state_dict(model.state_dict())  # through tying's state_dict hooks
    return meta


def op_assign(model, *_):
    model.load_state_dict(copy.deepcopy(model.state_dict()), assign=True)  # re-tied by the post-hook
    return model


def make_dtype_op(dtype):
    def op(model, tree, _dtype, expected, *_):
        model = model.to(dtype)
        for k in expected:
            expected[k] = expected[k].to(dtype)
        return model

    op.__name__ = f"op_to_{str(dtype).removeprefix('torch.')}"
    op.dtype = dtype
    return op


OPS = [op_save_load, op_deepcopy, op_materialize, op_assign, make_dtype_op(torch.float64), make_dtype_op(torch.bfloat16)]


def op_untie(data, model) -> None:
    spec = tying.get_spec(model)
    if not spec.ties:
        return
    path = data.draw(st.sampled_from(sorted(spec.paths())), label="untie")
    was_target = spec.source_of(path) is not None
    readers = spec.targets_of(path)
    before = {id(p) for p in model.parameters()}
    tying.untie(model, path)
    spec = tying.get_spec(model)
    assert spec.source_of(path) is None and not spec.targets_of(path)
    owner, _, name = path.rpartition(".")
    held = model.get_submodule(owner)._parameters[name]
    if was_target or any(t.transform is None for t in readers):
        # A target, or a source with plain readers (the first of which inherits the group):
        # the path now holds a new Parameter of its own.
        assert id(held) not in before
    else:
        # A source with only transposed readers keeps its Parameter; the readers get a new one.
        assert id(held) in before
    assert sum(q is held for _, q in model.named_parameters(remove_duplicate=False)) == 1  # nobody else holds it


def op_break_and_retie(data, model) -> None:
    spec = tying.get_spec(model)
    if not spec.ties:
        return
    t = data.draw(st.sampled_from(spec.ties), label="break")
    owner, _, name = t.target.rpartition(".")
    mod = model.get_submodule(owner)
    src = model.get_parameter(t.source)
    if t.transform is None:
        setattr(mod, name, nn.Parameter(src.detach().clone()))
    else:
        mod.parametrizations[name].original = nn.Parameter(src.detach().clone())
    assert [b.tie for b in tying.verify(model, raise_error=False).broken] == [t]
    tying.retie(model)
    tying.retie(model)  # idempotent


def op_resize(data, model, tree, expected):
    """``tying.resize_vocab`` on the rows of a random embedding, to a random size: returns the
    resized model and its tree. It works on a copy, which is dropped when the tie group reaches a
    LayerNorm (through a Linear's bias): resize_vocab resizes its parameters but cannot update
    its ``normalized_shape``, and no vocabulary is tied to a LayerNorm."""
    assert describe(model) == tree
    embeddings = sorted(f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Embedding))
    if not embeddings:
        return model, tree
    path = data.draw(st.sampled_from(embeddings), label="resize")
    size = data.draw(st.integers(1, 6), label="new_size")
    resized = copy.deepcopy(model)
    objects = [p for _, p in resized.named_parameters(remove_duplicate=False)]
    spec = list(tying.get_spec(resized).ties)
    result = tying.resize_vocab(resized, size, paths={path: 0})  # rows as the embedding reads them
    norms = {f"{n}.{p}" for n, m in resized.named_modules() if isinstance(m, nn.LayerNorm) for p in ("weight", "bias")}
    if any(norms.intersection(r.paths) for r in result.parameters):
        event("resize: dropped, a LayerNorm is in the group")
        return model, tree
    # In place: the same Parameter objects, the same spec.
    assert all(a is b for (_, a), b in zip(resized.named_parameters(remove_duplicate=False), objects, strict=True))
    assert tying.get_spec(resized).ties == spec
    # Each resized Parameter is listed once, with every path that reads it (its whole tie group).
    groups = {p: set(g.paths) for g in tying.find_ties(resized) for p in g.paths}
    for r in result.parameters:
        assert len(set(r.paths)) == len(r.paths) and set(r.paths) == groups.get(r.paths[0], {r.paths[0]})
    assert any(path in r.paths for r in result.parameters)
    transposed = {t.target for t in spec if t.transform}
    for r in result.parameters:
        assert r.old_shape[r.dim] == result.old_size and r.new_shape[r.dim] == size
        plain = next(p for p in r.paths if p not in transposed)  # the Parameter's own layout
        old = expected[plain].movedim(r.dim, 0)
        keep = min(len(old), size)
        new = read(resized, plain).movedim(r.dim, 0)
        # Kept entries exact; new ones the mean of the old (the default init), one draw for the group.
        assert new.shape == (size, *old.shape[1:])
        assert torch.equal(new[:keep], old[:keep])
        assert torch.equal(new[keep:], old.mean(0, keepdim=True).expand(size - keep, *old.shape[1:]))
        for p in r.paths:
            expected[p] = read(resized, p).detach().clone()
    return resized, describe(resized)


def op_compile(model, tree, dtype, expected, folder: Path, step: int):
    """``torch.compile`` (aot_eager: dynamo and AOTAutograd, without code generation, so eager's
    exact numbers): outputs and gradients equal eager's, and tying's functions see through the
    compiled wrapper. Returns the model loaded from the wrapper's checkpoint."""
    torch._dynamo.reset()  # a fresh cache: a hit recompile limit would silently run eager
    backend = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=backend)
    x = torch.randn(2, WIDTH, generator=torch.Generator().manual_seed(step)).to(dtype)
    runs = []
    for module in (model, compiled):
        outs = module(x)
        sum((o.float() ** 2).sum() for o in outs).backward()
        runs.append(([o.detach() for o in outs], [p.grad for p in model.parameters()]))
        model.zero_grad(set_to_none=True)
    assert backend.frame_count >= 1  # it did compile
    (eager_outs, eager_grads), (outs, grads) = runs
    assert len(outs) == len(eager_outs) and all(torch.equal(a, b) for a, b in zip(outs, eager_outs, strict=True))
    # One gradient per tie group, summed over its uses in another order than eager's: equal to rounding.
    for a, b in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert tying.verify(compiled, raise_error=False).ok
    assert tying.find_ties(compiled) == tying.find_ties(model)
    # The wrapper's checkpoint is the model's (safetensors orders the metadata at random: compare it read).
    path = tying.save(compiled, folder / f"c{step}.safetensors")
    ours, eager = tying.read_checkpoint(path), tying.read_checkpoint(tying.save(model, folder / f"e{step}.safetensors"))
    assert (ours.tensors, ours.aliases, ours.spec, ours.metadata) == (eager.tensors, eager.aliases, eager.spec, eager.metadata)
    fresh = build(tree, seed=1000 + step, dtype=dtype)
    tying.load(torch.compile(fresh, backend=backend), path)  # lazy: loading compiles nothing
    return fresh


# --------------------------------------------------------------------------- properties


def run(tree, data, steps) -> None:
    """Build ``tree``, declare random ties, apply ``steps`` and check the invariants after each."""
    model = build(tree, seed=0)
    draw_ties(data, model)
    paths = [p for p, _ in model.named_parameters(remove_duplicate=False)]
    logical = sorted({tying._paths.logical_path(p, model) for p in paths})
    expected = values(model, logical)
    dtype = torch.float32
    ties = tying.get_spec(model).ties
    event(f"declared ties: {min(len(ties), 3)}{'+' if len(ties) >= 3 else ''}")
    event(f"transposed ties: {'yes' if any(t.transform for t in ties) else 'no'}")
    check(model, expected)
    with tempfile.TemporaryDirectory() as tmp:
        for step, op in enumerate(steps):
            event(f"op: {getattr(op, '__name__', op)}")
            if op == "untie":
                op_untie(data, model)
            elif op == "retie":
                op_break_and_retie(data, model)
            elif op == "resize":
                model, tree = op_resize(data, model, tree, expected)
            else:
                dtype = getattr(op, "dtype", dtype)
                model = op(model, tree, dtype, expected, Path(tmp), step)
            check(model, expected)


# "resize" first: hypothesis draws the first choices more often, and a resize changes the most.
STEPS = st.sampled_from(["resize", *OPS, "untie", "retie"])


@_settings(3.0)
@given(tree=TREES, data=st.data())
def test_random_ties_survive_random_operations(tree, data) -> None:
    run(tree, data, data.draw(st.lists(STEPS, min_size=1, max_size=5), label="ops"))


# A compile costs about half a second (dynamo and AOTAutograd tracing): a few examples, each
# compiling once somewhere in a random sequence of the other operations.
@_settings(0.1)
@given(tree=TREES, data=st.data())
def test_random_ties_survive_torch_compile(tree, data) -> None:
    steps = data.draw(st.lists(STEPS, max_size=3), label="ops")
    at = data.draw(st.integers(0, len(steps)), label="compile at")
    run(tree, data, [*steps[:at], op_compile, *steps[at:]])


@_settings(1.0)
@given(tree=TREES, data=st.data())
def test_spec_json_and_checkpoint_header_round_trip(tree, data) -> None:
    model = build(tree, seed=0)
    draw_ties(data, model)
    spec = tying.get_spec(model)
    assert tying.TieSpec.from_json(spec.to_json()) == spec
    with tempfile.TemporaryDirectory() as tmp:
        path = tying.save(model, Path(tmp) / "m.safetensors")
        info = tying.read_checkpoint(path)
    assert info.format == "tying"
    assert info.spec == spec
    meta = json.loads(info.metadata["tying"])
    # Exactly the state_dict keys sharing a tensor with an earlier-stored key are aliased.
    state = model.state_dict()
    stored = {t.name for t in info.tensors}
    assert stored | set(info.aliases) == set(state)
    assert not stored & set(info.aliases)
    for dropped, kept in meta["aliases"].items():
        assert state[dropped] is state[kept] or state[dropped].data_ptr() == state[kept].data_ptr()
    assert len(stored) == len({id(p) for p in model.parameters()})


@_settings(1.0)
@given(tree=TREES, data=st.data())
def test_find_ties_groups_are_the_declared_groups(tree, data) -> None:
    model = build(tree, seed=0)
    draw_ties(data, model)
    spec = tying.get_spec(model)
    declared = {frozenset([src, *(t.target for t in ts)]) for src, ts in spec.groups().items()}
    found = tying.find_ties(model)
    assert {frozenset(g.paths) for g in found} == declared
    assert all(g.kind == "shared" for g in found)
    transposed = {t.target for t in spec.ties if t.transform}
    for g in found:
        for m in g.members:
            assert m.via == ("transpose" if m.path in transposed else "parameter")
    assert tying.find_ties(model) == found  # deterministic
