r"""An implicit (deep-equilibrium) layer: a weight-tied block run to its fixed point.

A block :math:`f_\theta(z, x)` applied again and again with the same weights and the input
injected at every application is a weight-tied network of unbounded depth; if it converges, its
output is the fixed point

.. math:: z^\star = f_\theta(z^\star, x),

which a root solver finds directly (Bai, Kolter & Koltun 2019, *Deep Equilibrium Models*,
arXiv 1909.01377). Differentiating the fixed-point equation (implicit function theorem) gives
the gradient without back-propagating through the solver's iterations:

.. math::
   \frac{\partial L}{\partial \theta}
   = \Big(\frac{\partial f}{\partial \theta}\Big)^{\!\top}
     \Big(I - \frac{\partial f}{\partial z}\Big)^{-\top} \frac{\partial L}{\partial z^\star},

where the vector :math:`g = (I - \partial f/\partial z)^{-\top}\, \partial L/\partial z^\star` is
itself the fixed point of :math:`g = (\partial f/\partial z)^\top g + \partial L/\partial z^\star`
(vector-Jacobian products only). Memory is one application of :math:`f` whatever the depth.
The phantom / Jacobian-free gradient (Fung et al., arXiv 2103.12803) drops the inverse: it
back-propagates through a few differentiable applications of :math:`f` started at
:math:`z^\star`. Kawaguchi (arXiv 2102.07346) proves that gradient descent on deep-equilibrium
*linear* models reaches a global minimum at a linear rate (the ``deq-linear`` task).

The solvers (Anderson acceleration, Broyden's method, plain fixed-point iteration) and the
implicit backward are :mod:`torchdeq`'s (``torchdeq.solver``, ``torchdeq.grad.backward_factory``).
Its ``get_deq`` core is not used: it reports statistics as per-sample tensors of the lowest
residual and returns its best estimate silently when it does not converge or meets NaN, while
this layer must warn or raise with the residual reached and never hand back a NaN; it also
configures through an argument namespace of options (normalisation, trajectory sampling) this
layer does not need. So the layer calls torchdeq's solver functions directly, checks their
statistics, and keeps its own :class:`SolverStats`.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["Implicit", "SolverStats"]

Solver = Literal["anderson", "broyden", "fixed_point"]
Backward = Literal["implicit", "phantom"]
#: torchdeq's name of each solver.
SOLVERS = {"anderson": "anderson", "broyden": "broyden", "fixed_point": "fixed_point_iter"}


@dataclass(frozen=True)
class SolverStats:
    """What the last solve did.

    ``residual`` is torchdeq's relative residual :math:`\\|f(z) - z\\| / \\|f(z)\\|`, per sample
    (the first dimension of the state) over the flattened rest, its largest value over the batch,
    at the estimate returned; ``converged`` is ``residual < tol``. The ``backward_*`` fields are
    filled in by the implicit backward once it has run (``None`` before, and for ``"phantom"``,
    whose ``backward_iterations`` is its number of differentiable steps and whose residual is
    ``None``)."""

    iterations: int
    residual: float
    converged: bool
    backward_iterations: int | None = None
    backward_residual: float | None = None


def torchdeq_module(name: str) -> Any:
    """``torchdeq.<name>``, or an ImportError saying how to install it."""
    try:
        return importlib.import_module(f"torchdeq.{name}")
    except ImportError as err:
        raise ImportError(f"tying.nn.Implicit needs torchdeq: pip install 'tying[deq]' ({err})") from None


def check_settings(solver: str, backward: str, tol: float, max_iter: int, backward_max_iter: int, on_fail: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {sorted(SOLVERS)}")
    if backward not in ("implicit", "phantom"):
        raise ValueError(f"backward={backward!r}: expected 'implicit' or 'phantom'")
    if not tol > 0:
        raise ValueError(f"tol={tol}: the tolerance must be > 0")
    if max_iter < 1:
        raise ValueError(f"max_iter={max_iter}: at least one iteration")
    if backward_max_iter < 1:
        raise ValueError(f"backward_max_iter={backward_max_iter}: at least one iteration (step)")
    if on_fail not in ("warn", "raise"):
        raise ValueError(f"on_fail={on_fail!r}: expected 'warn' or 'raise'")


def read_stats(info: Mapping[str, Tensor], what: str) -> tuple[int, float]:
    """(iterations, largest relative residual) of a torchdeq ``SolverStat``; an error when the
    solver met NaN or inf (torchdeq skips such steps and would return its last finite estimate)."""
    trace = info["rel_trace"]
    if not bool(torch.isfinite(trace).all()):
        raise FloatingPointError(f"{what}: NaN or inf in the fixed-point residual (the block diverged or produced NaN)")
    return int(info["nstep"].max().item()), float(info["rel_lowest"].max().item())


class Implicit(nn.Module):
    r"""The fixed point :math:`z^\star = f(z^\star, x)` of a block ``f``, found by a root solver,
    trained by implicit differentiation (see the module docstring for the math and papers).

    Args:
        f: the weight-tied block, called as ``f(z, x)`` and returning a tensor of ``z``'s shape.
            It should be a contraction in ``z`` (e.g. spectrally normalised) for a fixed point to
            exist and be found.
        solver: ``"anderson"`` (default), ``"broyden"`` or ``"fixed_point"`` (torchdeq's).
        tol: stop when the relative residual :math:`\|f(z)-z\|/\|f(z)\|` of every sample is below it.
        max_iter: the forward solver's iteration cap.
        backward: ``"implicit"`` (the adjoint fixed point above, solved by the same solver) or
            ``"phantom"`` (back-propagate through ``backward_max_iter`` applications of ``f``
            from :math:`z^\star`; 1 is the Jacobian-free gradient).
        backward_max_iter: the adjoint solver's cap (default ``max_iter``) or, for ``"phantom"``,
            the number of differentiable steps (default 1).
        on_fail: when a solve stops at the cap above ``tol``: ``"warn"`` (default) or ``"raise"``
            a RuntimeError; either way the message names the residual, the tolerance and the cap.
            A warning comes once per layer and direction (a training loop would repeat it every
            step); ``failures`` counts every such solve. NaN or inf is always a FloatingPointError.
        solver_kwargs: more keyword arguments of the torchdeq solver, for both solves (Anderson's
            ``m``, ``lam``, ``tau``; Broyden's ``LBFGS_thres``). torchdeq's Anderson regularises its
            mixing system with ``lam=1e-4``, which stalls it near relative residuals of 1e-8 on
            some blocks: for tighter tolerances pass ``{"lam": 1e-12}`` or use ``"broyden"`` /
            ``"fixed_point"``.

    ``forward(x, z0=None)``: the state starts at ``z0``, by default zeros of ``x``'s shape (pass
    ``z0`` when the state's shape differs from the input's). The first dimension of the state is
    the batch: the solver mixes and judges each sample separately (a state of one dimension is one
    sample). ``last_stats`` holds the :class:`SolverStats` of the last call; ``failures`` the
    number of forward and backward solves that stopped above ``tol`` since the layer was built.
    """

    def __init__(
        self,
        f: nn.Module,
        *,
        solver: Solver = "anderson",
        tol: float = 1e-4,
        max_iter: int = 30,
        backward: Backward = "implicit",
        backward_max_iter: int | None = None,
        on_fail: Literal["warn", "raise"] = "warn",
        solver_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        steps = backward_max_iter if backward_max_iter is not None else (max_iter if backward == "implicit" else 1)
        check_settings(solver, backward, tol, max_iter, steps, on_fail)
        reserved = sorted(set(solver_kwargs or {}) & {"max_iter", "tol", "stop_mode", "indexing", "return_final"})
        if reserved:
            raise ValueError(f"solver_kwargs sets {reserved}: pass max_iter and tol as the layer's own arguments")
        self.solver_kwargs = dict(solver_kwargs or {})
        self.f = f
        self.solver, self.tol, self.max_iter = solver, tol, max_iter
        self.backward, self.backward_max_iter, self.on_fail = backward, steps, on_fail
        self.solve: Callable[..., tuple[Tensor, list[Tensor], Mapping[str, Tensor]]] = torchdeq_module("solver").get_solver(SOLVERS[solver])
        self.last_stats: SolverStats | None = None
        self.failures = {"forward": 0, "backward": 0}

    def extra_repr(self) -> str:
        return f"solver={self.solver!r}, tol={self.tol}, max_iter={self.max_iter}, backward={self.backward!r}, backward_max_iter={self.backward_max_iter}"

    def forward(self, x: Tensor, z0: Tensor | None = None) -> Tensor:
        z0 = torch.zeros_like(x) if z0 is None else z0
        shape = z0.shape
        rows = shape[0] if z0.dim() >= 2 else 1

        def func(z: Tensor, tau: float = 1.0) -> Tensor:  # the solver's view: (batch, features)
            fz = self.f(z.reshape(shape), x).reshape(rows, -1)
            return fz if tau == 1.0 else tau * fz + (1 - tau) * z

        with torch.no_grad():
            z_star, _, info = self.solve(func, z0.detach().reshape(rows, -1), max_iter=self.max_iter, tol=self.tol, stop_mode="rel", **self.solver_kwargs)
        iterations, residual = read_stats(info, "Implicit forward")
        self.last_stats = SolverStats(iterations, residual, residual < self.tol)
        if residual >= self.tol:
            self.fail("forward", f"Implicit forward did not converge: relative residual {residual:.3g} >= tol {self.tol:g} after max_iter={self.max_iter} iterations ({self.solver})")
        out = self.differentiable(func, z_star.detach())
        if not bool(torch.isfinite(out).all()):
            raise FloatingPointError("Implicit forward: NaN or inf in f(z*) at the fixed point")
        return out.reshape(shape)

    def differentiable(self, func: Callable[..., Tensor], z_star: Tensor) -> Tensor:
        """The output at ``z_star`` with the chosen gradient attached (torchdeq's backward)."""
        grad = torchdeq_module("grad")
        if self.backward == "phantom":
            self.last_stats = dataclasses.replace(self.stats(), backward_iterations=self.backward_max_iter)
            make = grad.backward_factory(grad_type=self.backward_max_iter, tau=1.0)
        else:
            kwargs = {**self.solver_kwargs, "max_iter": self.backward_max_iter, "tol": self.tol, "stop_mode": "rel"}
            make = grad.backward_factory(grad_type="ift", b_solver=self.solve, b_solver_kwargs=kwargs)
        return make(self, func, z_star, writer=self.record_backward)[-1]

    def record_backward(self, info: Mapping[str, Tensor]) -> None:
        """torchdeq's writer for the adjoint solve: keep its statistics, check convergence."""
        iterations, residual = read_stats(info, "Implicit backward")
        self.last_stats = dataclasses.replace(self.stats(), backward_iterations=iterations, backward_residual=residual)
        if residual >= self.tol:
            self.fail("backward", f"Implicit backward did not converge: relative residual {residual:.3g} >= tol {self.tol:g} after backward_max_iter={self.backward_max_iter} iterations ({self.solver})")

    def stats(self) -> SolverStats:
        if self.last_stats is None:
            raise RuntimeError("Implicit.last_stats: the layer has not run yet")
        return self.last_stats

    def fail(self, direction: str, message: str) -> None:
        self.failures[direction] += 1
        if self.on_fail == "raise":
            raise RuntimeError(message)
        if self.failures[direction] == 1:
            message += f"; later {direction} solves of this layer that stop above tol are counted in .failures, not warned again"
            warnings.warn(message, RuntimeWarning, stacklevel=5)  # fail, forward, Module._call_impl, Module.__call__: the caller
