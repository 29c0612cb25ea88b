r"""Memory-efficient tied output layer + cross-entropy.

For hidden states :math:`H \in R^{N\times d}`, a (tied) output matrix :math:`E \in R^{V\times d}`,
an optional bias :math:`b` and targets :math:`t`, the loss is

.. math::
    z_i = E h_i + b, \qquad
    \ell_i = \operatorname{lse}(z_i) - (1-\varepsilon)\, z_{i,t_i} - \tfrac{\varepsilon}{V}\textstyle\sum_j z_{ij}

(:math:`\varepsilon` = label smoothing; ``F.cross_entropy``'s definition), and its gradient with
respect to the logits is :math:`G_i = \operatorname{softmax}(z_i) - (1-\varepsilon)\,e_{t_i} - \varepsilon/V`.
The naive ``F.linear`` + ``F.cross_entropy`` materialises the :math:`N\times V` logits and their
gradient (about 1 GB each for N = 8192, V = 33,278 in fp32). Here the tokens are processed one
chunk of :math:`C` rows at a time and the gradients are finished in the forward pass:
:math:`\partial H_c = G_c E`, :math:`\partial E \mathrel{+}= G_c^\top H_c`, :math:`\partial b \mathrel{+}= \mathbf 1^\top G_c`,
so the peak extra memory is one :math:`C\times V` block (the logits, turned in place into their
log-softmax and then their gradient; in a reduced ``compute_dtype`` also its low-precision copy)
plus :math:`\partial E` and :math:`\partial H`, and ``backward`` only scales them by the incoming
gradient. :math:`C` follows from :math:`N\cdot V` and a memory budget (:func:`chunk_rows`). The
weight's gradient flows through autograd into the one shared Parameter, where it adds to the
embedding lookup's gradient.

Under ``torch.compile`` the function traces into one graph (``fullgraph=True`` works): the count of
non-ignored targets stays a tensor (no host sync), and the logits product is a plain ``matmul``
that inductor lowers itself (see :func:`_logits`).
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import torch
from torch import Tensor

__all__ = ["tied_linear_cross_entropy", "chunk_rows", "CHUNK_MEMORY", "onednn_available"]

Reduction = Literal["mean", "sum", "none"]


@functools.cache
def onednn_available() -> bool:
    """Whether oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, an internal op that
    computes the fp32 product ``h @ W.T`` about 1.5x faster than MKL's transposed GEMM on AVX-512
    CPUs) is present and agrees with ``torch.mm`` on a probe. ``TYING_DISABLE_ONEDNN=1`` forces
    the ``torch.mm`` path."""
    if os.environ.get("TYING_DISABLE_ONEDNN") == "1" or not torch.backends.mkldnn.is_available():
        return False
    try:
        # Fixed values, not torch.randn: a probe that drew from the global generator would shift
        # every random number after the first fused loss of a process (dropout masks, init).
        a = torch.linspace(-1, 1, 8 * 16).reshape(8, 16)
        b = torch.linspace(1, -1, 4 * 16).reshape(4, 16).cos()
        out = torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
        return bool(torch.allclose(out, a @ b.T, atol=1e-4))
    except (RuntimeError, AttributeError):
        return False


def _logits(h: Tensor, w: Tensor) -> Tensor:
    """``h @ w.T``. Eager fp32 on CPU goes through oneDNN's inner product, which measured about 1.5x
    the MKL rate for this transposed product on an AMD EPYC (on par with it on an Intel Xeon); MKL
    is as fast for the other two products and for bf16. Not under ``torch.compile``: inductor lowers ``mkldnn._linear_pointwise`` only as the
    output of its own weight-prepacking pass for frozen inference graphs, and asserts that the
    weight is a graph constant (``w.get_name() in V.graph.constants``); a trainable weight is a
    graph input, so compiling the op fails with ``InductorError``. The plain product there is
    inductor's own GEMM choice."""
    if not torch.compiler.is_compiling() and h.device.type == "cpu" and h.dtype == torch.float32 and onednn_available():
        return torch.ops.mkldnn._linear_pointwise(h.contiguous(), w.contiguous(), None, "none", [], "")
    return h @ w.T


def _add_grad_weight(d_weight: Tensor, g: Tensor, h: Tensor) -> None:
    """``d_weight += g.T @ h`` without copying the transposed ``g`` block (addmm reads it strided)."""
    if g.dtype == d_weight.dtype:
        d_weight.addmm_(g.t(), h)
    else:  # reduced-precision product, accumulated in d_weight's (fp32) precision
        d_weight += g.t() @ h


#: Default ``memory_budget`` of :func:`tied_linear_cross_entropy`: bytes of the ``C x V`` blocks of one chunk.
CHUNK_MEMORY = 64 * 2**20


def chunk_rows(
    n_rows: int,
    n_vocab: int,
    memory_budget: int = CHUNK_MEMORY,
    dtype: torch.dtype = torch.float32,
    compute_dtype: torch.dtype | None = None,
) -> int:
    """Tokens per chunk of :func:`tied_linear_cross_entropy`: all ``n_rows`` when their
    ``n_rows x n_vocab`` blocks fit ``memory_budget`` bytes, else as many rows as fit (at least
    one). A chunk holds one block of logits in the accumulation dtype (``dtype``, at least fp32),
    plus their copy in a narrower ``compute_dtype``. A budget of only tens of rows makes thin
    matrix products, which run well below the machine's GEMM rate."""
    if memory_budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget}")
    acc, cdt = torch.promote_types(dtype, torch.float32), compute_dtype or dtype
    per_row = n_vocab * (acc.itemsize + (cdt.itemsize if cdt != acc else 0))
    return max(1, min(n_rows, memory_budget // max(per_row, 1)))


def _log_probs(h: Tensor, w: Tensor, bias: Tensor | None, acc: torch.dtype, out: Tensor | None) -> Tensor:
    """``log_softmax(h @ w.T + bias)`` in ``acc`` precision, in the chunk's one ``C x V`` block
    (``out`` when given): the logits, then in place their log-softmax (later their gradient)."""
    z = _logits(h, w) if out is None else torch.mm(h, w.t(), out=out)
    if bias is not None:
        z = z.add_(bias) if z.dtype == acc else z + bias.to(acc)  # reduced-precision logits promote to acc
    # log_softmax is one vectorised pass (about half the cost of logsumexp + exp) that also
    # upcasts, and sum_j z_ij = sum_j logp_ij + V * lse_i puts the loss in terms of logp alone.
    # Each row is read whole before it is written, so out=z is safe, and saves a second block.
    return torch.log_softmax(z, dim=1, out=z) if z.dtype == acc else torch.log_softmax(z, dim=1, dtype=acc)


def _chunked(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    ignore_index: int,
    label_smoothing: float,
    step: int,
    compute_dtype: torch.dtype | None,
    row_weight: Tensor | None,
    need: tuple[bool, bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Per-token losses, and — when ``row_weight`` is given — the gradients of
    ``sum_i row_weight_i * loss_i`` for the inputs flagged in ``need`` (hidden, weight, bias),
    ``step`` rows at a time."""
    n, vocab = hidden.shape[0], weight.shape[0]
    cdt = compute_dtype or hidden.dtype
    acc = torch.promote_types(hidden.dtype, torch.float32)  # softmax, loss and sums: fp32 at least
    w = weight.to(cdt)
    valid = target != ignore_index
    grads = row_weight is not None
    d_hidden = torch.empty_like(hidden) if grads and need[0] else None
    d_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if grads and need[1] else None
    d_bias = torch.zeros(vocab, dtype=acc, device=weight.device) if grads and bias is not None and need[2] else None
    losses = torch.empty(n, dtype=acc, device=hidden.device)
    # Several fp32 chunks reuse one block (with torch.mm's out=): a fresh block per chunk is pages to
    # fault in, 6.5 % of the step at N = 4096, V = 33,278 on a 2-core Xeon VM. bf16 products gained
    # nothing measurable from it; inductor plans its own buffers.
    reuse = n > step and cdt == acc and not torch.compiler.is_compiling()
    block = torch.empty(step, vocab, dtype=acc, device=hidden.device) if reuse else None
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        h = hidden[lo:hi].to(cdt)
        ok = valid[lo:hi]
        t = torch.where(ok, target[lo:hi], 0)[:, None]
        logp = _log_probs(h, w, bias, acc, None if block is None else block[: hi - lo])
        loss = (label_smoothing - 1.0) * logp.gather(1, t).squeeze(1)
        if label_smoothing:
            loss -= (label_smoothing / vocab) * logp.sum(dim=1)
        losses[lo:hi] = torch.where(ok, loss, 0.0)
        if row_weight is None:
            continue
        g = logp.exp_()  # softmax, in place of logp
        g.scatter_add_(1, t, torch.full_like(loss[:, None], label_smoothing - 1.0))
        if label_smoothing:
            g.sub_(label_smoothing / vocab)
        g.mul_(torch.where(ok, row_weight[lo:hi], 0.0)[:, None])
        gc = g.to(cdt)
        if d_hidden is not None:
            d_hidden[lo:hi] = gc @ w
        if d_weight is not None:
            _add_grad_weight(d_weight, gc, h)
        if d_bias is not None:
            d_bias += g.sum(dim=0)
    return (
        losses,
        d_hidden,
        None if d_weight is None else d_weight.to(weight.dtype),
        None if d_bias is None or bias is None else d_bias.to(bias.dtype),
    )


class _TiedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        ignore_index: int,
        reduction: str,
        label_smoothing: float,
        step: int,
        compute_dtype: torch.dtype | None,
    ) -> Tensor:
        args = (ignore_index, label_smoothing, step, compute_dtype)
        need = tuple(ctx.needs_input_grad[:3])  # type: ignore[attr-defined]
        ctx.reduction, ctx.args = reduction, args  # type: ignore[attr-defined]
        if reduction == "none":
            # Per-token weights arrive only in backward: recompute there, chunk by chunk.
            ctx.save_for_backward(hidden, weight, bias, target)  # type: ignore[arg-type]  # bias may be None
            losses, *_ = _chunked(hidden, weight, bias, target, *args, None, need)
            return losses.to(hidden.dtype)
        # The count stays a tensor: int() would sync with the device and break a torch.compile graph.
        n_valid = (target != ignore_index).sum()
        acc = torch.promote_types(hidden.dtype, torch.float32)
        row_weight = None
        if any(need):  # mean: 1 / n_valid, and zero gradients (not inf) when every target is ignored
            scale = 1.0 / n_valid.clamp_min(1).to(acc) if reduction == "mean" else torch.ones((), dtype=acc, device=hidden.device)
            row_weight = scale.expand(hidden.shape[0])
        losses, *grads = _chunked(hidden, weight, bias, target, *args, row_weight, need)
        ctx.save_for_backward(*grads)  # type: ignore[arg-type]  # absent gradients are None
        total = losses.sum()
        if reduction == "mean":
            total = total / n_valid  # 0 / 0 = nan when every target is ignored, as F.cross_entropy
        return total.to(hidden.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor):  # type: ignore[override]
        if ctx.reduction == "none":  # type: ignore[attr-defined]
            hidden, weight, bias, target = ctx.saved_tensors  # type: ignore[attr-defined]
            need = tuple(ctx.needs_input_grad[:3])  # type: ignore[attr-defined]
            _, *grads = _chunked(hidden, weight, bias, target, *ctx.args, grad_out, need)  # type: ignore[attr-defined,call-arg]
        else:
            grads = [None if g is None else g * grad_out.to(g.dtype) for g in ctx.saved_tensors]  # type: ignore[attr-defined]
        return (*grads, None, None, None, None, None, None)


def tied_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    chunk_size: int | None = None,
    memory_budget: int = CHUNK_MEMORY,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    r"""``F.cross_entropy(F.linear(hidden, weight, bias), target, ...)`` without materialising the
    :math:`N\times V` logits (see the module docstring for the math).

    Args:
        hidden: ``[..., d]`` hidden states; flattened to ``N`` rows.
        weight: ``[V, d]`` output matrix — typically the tied input embedding.
        target: ``[...]`` class indices matching ``hidden``'s leading dimensions.
        bias: optional ``[V]`` output bias.
        ignore_index, reduction, label_smoothing: as in ``torch.nn.functional.cross_entropy``.
        chunk_size: tokens per chunk; overrides ``memory_budget``.
        memory_budget: bytes of the ``C x V`` blocks one chunk of ``C`` tokens holds at once
            (default :data:`CHUNK_MEMORY`, 64 MiB); the chunk size follows from ``N * V`` and
            this budget (:func:`chunk_rows`). The peak extra memory is about this plus the
            gradients of ``hidden`` and ``weight``.
        compute_dtype: dtype of the three matrix products, e.g. ``torch.bfloat16`` for speed;
            the softmax, the loss and the gradient accumulation stay in fp32. Default: the input dtype.

    Exact to float tolerance against the naive path; the gradients for ``hidden``, ``weight`` and
    ``bias`` are computed during the forward pass (``reduction="none"`` recomputes them in backward,
    since the per-token weights are known only then).
    """
    d = hidden.shape[-1]
    if weight.dim() != 2 or weight.shape[1] != d:
        raise ValueError(f"weight must be [V, {d}] to match hidden [..., {d}], got {list(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be [{weight.shape[0]}] to match weight {list(weight.shape)}, got {list(bias.shape)}")
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(f"target shape {list(target.shape)} must equal hidden's leading shape {list(hidden.shape[:-1])}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive number of tokens, got {chunk_size}")
    n = target.numel()
    step = chunk_size or chunk_rows(n, weight.shape[0], memory_budget, hidden.dtype, compute_dtype)
    out = _TiedLinearCrossEntropy.apply(
        hidden.reshape(-1, d), weight, bias, target.reshape(-1), ignore_index, reduction, label_smoothing, step, compute_dtype
    )
    return out.reshape(target.shape) if reduction == "none" else out
