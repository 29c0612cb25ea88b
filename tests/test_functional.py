"""tied_linear_cross_entropy and TiedOutput against the naive F.linear + F.cross_entropy path."""

from __future__ import annotations

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
def test_float32_close_to_naive_on_both_gemm_paths(onednn: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if onednn and not tf.onednn_available():
        pytest.skip("oneDNN inner product not available in this torch build")
    monkeypatch.setattr(tf, "onednn_available", lambda: onednn)
    ref, out, g_ref, g_out = _naive_and_fused(
        300, 64, 1000, bias=True, reduction="mean", smoothing=0.0, ignore_every=5, chunk=128, dtype=torch.float32
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


def test_bf16_compute_error_is_small() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(512, 128, generator=g)
    w = torch.randn(2000, 128, generator=g) * 0.1
    t = torch.randint(0, 2000, (512,), generator=g)
    ref = F.cross_entropy(F.linear(h, w), t)
    out = tied_linear_cross_entropy(h, w, t, compute_dtype=torch.bfloat16)
    assert out.dtype == torch.float32
    assert abs(out.item() - ref.item()) / ref.item() < 1e-2


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
