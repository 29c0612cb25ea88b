r"""Deep-equilibrium *linear* models (Kawaguchi 2021, arXiv 2102.07346) and their finite-depth
weight-tied truncations.

One block with one weight matrix :math:`A` (``d x d``, ``d`` the input width) and the input
injected at every application,

.. math:: z^{(k)} = \gamma\,\sigma(A)\, z^{(k-1)} + x, \qquad z^{(0)} = 0, \qquad
          \sigma(A) = \frac{A}{\|A^\top A\|_F + \delta},

read out by :math:`h(x) = B z`. ``depth = None`` is the equilibrium, the infinitely deep tied
stack :math:`z^\star = (I - \gamma\sigma(A))^{-1} x`, found by :class:`tying.nn.Implicit` and
trained by implicit differentiation; ``depth = k`` applies the block ``k`` times
(:math:`z^{(k)} = \sum_{i<k} (\gamma\sigma(A))^i x`); ``depth = 1`` is the shallow linear model
:math:`B x` (no :math:`A`). Since :math:`\|\sigma(A)\|_2 \le \sqrt{\|A^\top A\|_F} /
(\|A^\top A\|_F + \delta) \le 1 / (2\sqrt\delta)`, :math:`\delta \ge 1/4` and :math:`\gamma < 1`
make the block a contraction, so the equilibrium exists, is unique, and every map in the model is
an invertible linear map followed by :math:`B`: each depth spans all linear functions of
:math:`x`, and the global minimum of the squared loss is the least-squares optimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from tying.constraints import Range, check_ranges
from tying.nn import Implicit

__all__ = ["DEQLinear", "DEQLinearConfig"]


@dataclass(frozen=True)
class DEQLinearConfig:
    """``depth``: None for the equilibrium, else applications of the block (1: shallow)."""

    in_features: Annotated[int, Range(ge=1)]
    out_features: Annotated[int, Range(ge=1)] = 1
    depth: int | None = None
    gamma: Annotated[float, Range(gt=0, lt=1)] = 0.8
    delta: Annotated[float, Range(ge=0.25)] = 0.25
    init_scale: Annotated[float, Range(gt=0)] = 1.0
    tol: Annotated[float, Range(gt=0)] = 1e-10

    def __post_init__(self) -> None:
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"depth={self.depth}: at least one application of the block (1 is the shallow model), or None for the equilibrium")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma={self.gamma}: must be in (0, 1) for the block to contract")
        if self.delta < 0.25:
            raise ValueError(f"delta={self.delta}: must be >= 0.25 so that ||sigma(A)|| <= 1")
        check_ranges(self)  # the other annotated bounds (widths, init_scale, tol)


class Block(nn.Module):
    """:math:`f(z, x) = \\gamma\\sigma(A) z + x` over rows."""

    def __init__(self, config: DEQLinearConfig) -> None:
        super().__init__()
        self.gamma, self.delta = config.gamma, config.delta
        self.A = nn.Parameter(torch.randn(config.in_features, config.in_features) * config.init_scale / config.in_features**0.5)

    def matrix(self) -> Tensor:
        """:math:`\\gamma\\sigma(A)`."""
        return self.gamma * self.A / (torch.linalg.matrix_norm(self.A.T @ self.A) + self.delta)

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return z @ self.matrix().T + x


class DEQLinear(nn.Module):
    """:math:`h(x) = B z(x)` with :math:`z` the block's equilibrium or its ``depth``-th application."""

    def __init__(self, config: DEQLinearConfig) -> None:
        super().__init__()
        self.config = config
        block = Block(config) if config.depth != 1 else None
        # The equilibrium holds its block inside the implicit layer (one registered copy: deq.f.A).
        self.deq = Implicit(block, solver="fixed_point", tol=config.tol, max_iter=400, on_fail="raise") if block is not None and config.depth is None else None
        self.stack = block if self.deq is None else None
        self.B = nn.Linear(config.in_features, config.out_features, bias=False)

    @property
    def block(self) -> Block | None:
        """The tied block (None for the shallow model)."""
        return self.deq.f if self.deq is not None else self.stack  # type: ignore[return-value]

    def features(self, x: Tensor) -> Tensor:
        """:math:`z(x)`: the equilibrium, or ``depth`` applications of the block from zero."""
        if self.deq is not None:
            return self.deq(x)
        z = x  # the first application from z = 0
        for _ in range((self.config.depth or 1) - 1):
            assert self.stack is not None
            z = self.stack(z, x)
        return z

    def forward(self, x: Tensor) -> Tensor:
        return self.B(self.features(x))

    def closed_form(self, x: Tensor) -> Tensor:
        """The equilibrium model's output by a linear solve, :math:`B (I - \\gamma\\sigma(A))^{-1} x` (a cross-check)."""
        assert self.block is not None
        m = self.block.matrix()
        return self.B(torch.linalg.solve(torch.eye(m.shape[0], dtype=m.dtype) - m, x.T).T)
