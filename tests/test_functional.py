"""tied_linear_cross_entropy and TiedOutput against the naive F.linear + F.cross_entropy path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tying
from tying import functional as tf
from tying.functional import tied_linear_cross_entropy
from tying.nn import TiedOutput


def _naive_and_fused(n, d, v, *, bias, reduction, smoothing, ignore_every, chunk, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(v, d, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(v, generator=g, dtype=dtype, requires_grad=True) if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    if ignore_every:
        t[::ignore_every] = -100
    inputs = [h, w] + ([b] if bias else [])
    ref = F.cross_entropy(F.linear(h, w, b), t, reduction=reduction, label_smoothing=smoothing)
    out = tied_linear_cross_entropy(h, w, t, b, reduction=reduction, label_smoothing=smoothing, chunk_size=chunk)
    grad_out = torch.randn(ref.shape, generator=g, dtype=dtype)
    return ref, out, torch.autograd.grad(ref, inputs, grad_out), torch.autograd.grad(out, inputs, grad_out)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 12),
    v=st.integers(2, 50),
    bias=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    smoothing=st.sampled_from([0.0, 0.1, 0.5]),
    ignore_every=st.sampled_from([0, 2, 3, 7]),
    chunk=st.integers(1, 16),
)
def test_matches_naive_float64(n, d, v, bias, reduction, smoothing, ignore_every, chunk) -> None:
    ref, out, g_ref, g_out = _naive_and_fused(
        n, d, v, bias=bias, reduction=reduction, smoothing=smoothing, ignore_every=ignore_every, chunk=chunk
    )
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10, equal_nan=True)
    for a, b in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, equal_nan=True)


def test_gradcheck_float64() -> None:
    h = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, -100, 8, 2, 2])
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda h, w, b: tied_linear_cross_entropy(h, w, t, b, reduction=reduction, label_smoothing=0.1, chunk_size=4),
            (h, w, b),
        )


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("chunk", [None, 128])  # one chunk: _logits' kernel; several: torch.mm into a reused block
def test_float32_close_to_naive_on_both_gemm_paths(onednn: bool, chunk: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if onednn and not tf.onednn_available():
        pytest.skip("oneDNN inner product not available in this torch build")
    monkeypatch.setattr(tf, "onednn_available", lambda: onednn)
    ref, out, g_ref, g_out = _naive_and_fused(
        300, 64, 1000, bias=True, reduction="mean", smoothing=0.0, ignore_every=5, chunk=chunk, dtype=torch.float32
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_onednn_probe_falls_back_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    tf.onednn_available.cache_clear()
    monkeypatch.setenv("TYING_DISABLE_ONEDNN", "1")
    try:
        assert tf.onednn_available() is False
    finally:
        tf.onednn_available.cache_clear()


@pytest.mark.parametrize("chunk", [None, 100])  # one chunk; several, in reused fp32 and bf16 blocks
def test_bf16_compute_error_is_small(chunk: int | None) -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(512, 128, generator=g, requires_grad=True)
    w = (torch.randn(2000, 128, generator=g) * 0.1).requires_grad_()
    b = torch.randn(2000, generator=g, requires_grad=True)
    t = torch.randint(0, 2000, (512,), generator=g)
    ref = F.cross_entropy(F.linear(h, w, b), t, label_smoothing=0.1)
    out = tied_linear_cross_entropy(h, w, t, b, label_smoothing=0.1, chunk_size=chunk, compute_dtype=torch.bfloat16)
    assert out.dtype == torch.float32
    assert abs(out.item() - ref.item()) / ref.item() < 1e-2
    for got, expected in zip(torch.autograd.grad(out, (h, w, b)), torch.autograd.grad(ref, (h, w, b)), strict=True):
        assert float((got - expected).norm() / expected.norm()) < 1e-2


def test_all_ignored_mean_is_nan_like_torch() -> None:
    h, w = torch.randn(4, 3, requires_grad=True), torch.randn(5, 3)
    t = torch.full((4,), -100)
    assert torch.isnan(F.cross_entropy(F.linear(h, w), t)) and torch.isnan(tied_linear_cross_entropy(h, w, t))


def test_leading_dims_and_errors() -> None:
    h, w, t = torch.randn(2, 3, 4), torch.randn(7, 4), torch.randint(0, 7, (2, 3))
    assert tied_linear_cross_entropy(h, w, t, reduction="none").shape == (2, 3)
    with pytest.raises(ValueError, match=r"weight must be \[V, 4\].*\[7, 5\]"):
        tied_linear_cross_entropy(h, torch.randn(7, 5), t)
    with pytest.raises(ValueError, match=r"bias must be \[7\]"):
        tied_linear_cross_entropy(h, w, t, torch.randn(6))
    with pytest.raises(ValueError, match=r"target shape \[6\] must equal hidden's leading shape \[2, 3\]"):
        tied_linear_cross_entropy(h, w, t.reshape(-1))
    with pytest.raises(ValueError, match="reduction"):
        tied_linear_cross_entropy(h, w, t, reduction="avg")  # type: ignore[arg-type]


def test_tied_output_accumulates_into_the_shared_embedding() -> None:
    torch.manual_seed(0)
    model = nn.ModuleDict({"embed": nn.Embedding(11, 6), "out": TiedOutput(6, 11)}).double()
    tying.tie(model, "embed.weight", "out.weight")
    tokens, target = torch.randint(0, 11, (5, 7)), torch.randint(0, 11, (5, 7))
    model.out.loss(torch.tanh(model.embed(tokens)), target).backward()
    fused_grad = model.embed.weight.grad.clone()
    model.zero_grad()
    F.cross_entropy(model.out(torch.tanh(model.embed(tokens))).reshape(-1, 11), target.reshape(-1)).backward()
    assert model.out.weight is model.embed.weight
    torch.testing.assert_close(fused_grad, model.embed.weight.grad, rtol=1e-12, atol=1e-12)


def test_chunk_rows_follow_n_times_v_and_the_memory_budget() -> None:
    mib = 2**20
    assert tf.chunk_rows(700, 10_000) == 700  # 700 x 10,000 fp32 logits fit 64 MiB: one chunk
    assert tf.chunk_rows(8192, 33_278) == 64 * mib // (4 * 33_278) == 504
    assert tf.chunk_rows(8192, 33_278, memory_budget=16 * mib) == 16 * mib // (4 * 33_278)
    # bf16 products keep a bf16 copy beside the fp32 block; float64 rows take 8 bytes a logit.
    assert tf.chunk_rows(8192, 1000, 6000 * 10, compute_dtype=torch.bfloat16) == 10
    assert tf.chunk_rows(8192, 1000, 8000 * 10, dtype=torch.float64) == 10
    assert tf.chunk_rows(5, 10**9, 1) == 1  # at least one row, whatever the budget
    with pytest.raises(ValueError, match="memory_budget must be a positive number of bytes, got 0"):
        tf.chunk_rows(5, 10, 0)


def test_memory_budget_sets_the_chunks_of_the_function_and_of_tied_output(monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[int] = []  # the rows of each chunk's logits, as their log-softmax sees them
    log_softmax = torch.log_softmax
    monkeypatch.setattr(torch, "log_softmax", lambda z, *args, **kwargs: rows.append(z.shape[0]) or log_softmax(z, *args, **kwargs))
    g = torch.Generator().manual_seed(0)
    h, t = torch.randn(2, 5, 4, generator=g, dtype=torch.float64), torch.randint(0, 7, (2, 5), generator=g)
    out = TiedOutput(4, 7, memory_budget=3 * 7 * 8).double()  # three float64 rows of 7 logits
    assert "memory_budget=168" in repr(out)
    torch.testing.assert_close(out.loss(h, t), F.cross_entropy(out(h).reshape(-1, 7), t.reshape(-1)), rtol=1e-12, atol=1e-12)
    assert rows == [3, 3, 3, 1]
    rows.clear()
    tied_linear_cross_entropy(h, out.weight, t, memory_budget=10 * 7 * 8, chunk_size=4)  # chunk_size wins
    assert rows == [4, 4, 2]
    with pytest.raises(ValueError, match="chunk_size must be a positive number of tokens, got -1"):
        tied_linear_cross_entropy(h, out.weight, t, chunk_size=-1)


def _peak_extra_bytes(fn) -> int:
    """Peak resident memory of ``fn()`` above the memory resident before it (Linux: VmHWM, reset
    through /proc/self/clear_refs)."""
    status = Path("/proc/self/status")
    read = lambda key: next(int(x.split()[1]) * 1024 for x in status.read_text().splitlines() if x.startswith(key))  # noqa: E731
    Path("/proc/self/clear_refs").write_text("5")
    base = read("VmRSS:")
    fn()
    return read("VmHWM:") - base


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory read from Linux's /proc/self")
def test_peak_extra_memory_is_one_block_of_logits() -> None:
    # The logits become their log-softmax and then their gradient in place: one C x V block, not two.
    n, d, v = 2048, 16, 8192  # a 64 MiB fp32 block: mmap'd by malloc, so resident exactly while alive
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(n, d, generator=g, requires_grad=True), torch.randn(v, d, generator=g, requires_grad=True)
    t = torch.randint(0, v, (n,), generator=g)
    step = lambda: tied_linear_cross_entropy(h, w, t, torch.zeros(v, requires_grad=True), chunk_size=n).backward()  # noqa: E731
    step()  # kernels and allocator warm
    h.grad = w.grad = None
    assert _peak_extra_bytes(step) < 1.25 * n * v * 4


def test_the_onednn_probe_draws_nothing_from_the_global_generator() -> None:
    from tying.functional import onednn_available

    onednn_available.cache_clear()
    torch.manual_seed(0)
    onednn_available()
    after_probe = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_probe, torch.rand(3))
