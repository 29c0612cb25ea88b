"""tying.nn.Implicit: the fixed point against f(z*) = z* and the closed form of a linear contraction,
its gradients against finite differences, torch.linalg.solve and the unrolled weight-tied stack,
statistics, save/load, and the errors (non-convergence, NaN, bad settings)."""

from __future__ import annotations

import warnings

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import tying
from tying.nn import Implicit, SolverStats

D = torch.float64


def contraction(n: int, scale: float, generator: torch.Generator) -> Tensor:
    """A random n x n matrix of spectral norm ``scale``."""
    a = torch.randn(n, n, dtype=D, generator=generator)
    return scale * a / torch.linalg.matrix_norm(a, 2)


class Linear(nn.Module):
    """f(z, x) = A z + B x over rows (z: [batch, n], x: [batch, m]); A and B may be plain tensors."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return z @ self.a.T + x @ self.b.T


class Tanh(nn.Module):
    """f(z, x) = tanh(W z + U x + c), a contraction when ||W|| < 1."""

    def __init__(self, n: int = 6, m: int = 4, scale: float = 0.6, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(contraction(n, scale, g))
        self.u = nn.Parameter(torch.randn(n, m, dtype=D, generator=g))
        self.c = nn.Parameter(torch.randn(n, dtype=D, generator=g))

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(z @ self.w.T + x @ self.u.T + self.c)


def closed_form(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """z* = (I - A)^-1 B x for every row of x."""
    return torch.linalg.solve(torch.eye(a.shape[0], dtype=a.dtype) - a, b @ x.T).T


def inputs(batch: int = 3, m: int = 4, seed: int = 1) -> Tensor:
    return torch.randn(batch, m, dtype=D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("solver", ["anderson", "broyden", "fixed_point"])
def test_the_fixed_point_satisfies_f_of_z_equals_z(solver: str) -> None:
    f = Tanh()
    layer = Implicit(f, solver=solver, tol=1e-8, max_iter=200)
    x = inputs()
    z = layer(x, torch.zeros(3, 6, dtype=D)).detach()
    fz = f(z, x)
    assert ((fz - z).norm(dim=1) / fz.norm(dim=1)).max() < 1e-8
    stats = layer.last_stats
    assert stats is not None and stats.converged and stats.residual < 1e-8 and 1 <= stats.iterations <= 200
    assert stats.backward_iterations is None  # no backward yet


@pytest.mark.parametrize("solver", ["anderson", "broyden", "fixed_point"])
def test_a_linear_contraction_matches_its_closed_form_and_gradients(solver: str) -> None:
    g = torch.Generator().manual_seed(0)
    a = contraction(5, 0.7, g).requires_grad_()
    b = torch.randn(5, 4, dtype=D, generator=g).requires_grad_()
    x = inputs().requires_grad_()
    weights = torch.randn(3, 5, dtype=D, generator=g)
    z = Implicit(Linear(a, b), solver=solver, tol=1e-11, max_iter=300)(x, torch.zeros(3, 5, dtype=D))
    exact = closed_form(a, b, x)
    torch.testing.assert_close(z, exact, rtol=1e-9, atol=1e-9)
    got = torch.autograd.grad((weights * z).sum(), (a, b, x))
    want = torch.autograd.grad((weights * exact).sum(), (a, b, x))
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, g_want, rtol=1e-8, atol=1e-8)


def test_gradients_match_finite_differences() -> None:
    g = torch.Generator().manual_seed(0)
    w = contraction(4, 0.5, g).requires_grad_()
    u = torch.randn(4, 3, dtype=D, generator=g).requires_grad_()
    x = inputs(2, 3).requires_grad_()

    class Block(nn.Module):
        def forward(self, z: Tensor, x: Tensor) -> Tensor:
            return torch.tanh(z @ w.T + x @ u.T)

    layer = Implicit(Block(), solver="broyden", tol=1e-13, max_iter=100)

    def run(w_: Tensor, u_: Tensor, x_: Tensor) -> Tensor:
        nonlocal w, u
        w, u = w_, u_
        return layer(x_, torch.zeros(2, 4, dtype=D))

    assert torch.autograd.gradcheck(run, (w, u, x), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backward", ["implicit", "phantom"])
def test_gradients_match_the_unrolled_weight_tied_stack(backward: str) -> None:
    f = Tanh()
    x = inputs().requires_grad_()
    z = torch.zeros(3, 6, dtype=D)
    for _ in range(200):  # the same block, 200 times: the explicit tied stack
        z = f(z, x)
    unrolled = torch.autograd.grad(z.square().sum(), [*f.parameters(), x])
    layer = Implicit(f, solver="anderson", tol=1e-11, max_iter=200, backward=backward, backward_max_iter=None if backward == "implicit" else 200)
    implicit = torch.autograd.grad(layer(x, torch.zeros(3, 6, dtype=D)).square().sum(), [*f.parameters(), x])
    for got, want in zip(implicit, unrolled):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-8)
    stats = layer.last_stats
    assert stats is not None and stats.backward_iterations is not None
    if backward == "implicit":
        assert stats.backward_residual is not None and stats.backward_residual < 1e-11
    else:
        assert stats.backward_iterations == 200 and stats.backward_residual is None


def test_phantom_gradient_of_one_step_is_the_jacobian_free_gradient() -> None:
    f = Tanh()
    x = inputs()
    layer = Implicit(f, tol=1e-10, max_iter=200, backward="phantom")
    out = layer(x, torch.zeros(3, 6, dtype=D))
    z_star = out.detach()
    jfb = torch.autograd.grad(f(z_star, x).sum(), list(f.parameters()))
    for got, want in zip(torch.autograd.grad(out.sum(), list(f.parameters())), jfb):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-9)


def test_the_state_defaults_to_zeros_of_the_input_shape_and_keeps_any_shape() -> None:
    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(3, 3, 3, padding=1, dtype=D)
            with torch.no_grad():
                self.conv.weight.mul_(0.2)

        def forward(self, z: Tensor, x: Tensor) -> Tensor:
            return torch.tanh(self.conv(z) + x)

    x = torch.randn(2, 3, 7, dtype=D)
    z = Implicit(Conv(), tol=1e-9, max_iter=100)(x)
    assert z.shape == x.shape
    single = Implicit(Conv(), tol=1e-9, max_iter=100)(x[0])  # a state of one sample, [3, 7]
    assert single.shape == (3, 7)


def test_save_load_gives_the_same_outputs(tmp_path: Path) -> None:
    model = nn.Sequential()
    model.add_module("deq", Implicit(Tanh(), tol=1e-9, max_iter=100))
    x = inputs()
    before = model.deq(x, torch.zeros(3, 6, dtype=D))
    path = tying.save(model, tmp_path / "deq.safetensors")
    fresh = nn.Sequential()
    fresh.add_module("deq", Implicit(Tanh(seed=5), tol=1e-9, max_iter=100))
    tying.load(fresh, path)
    torch.testing.assert_close(fresh.deq(x, torch.zeros(3, 6, dtype=D)), before, rtol=0, atol=1e-12)


def test_non_convergence_warns_or_raises_with_the_residual() -> None:
    f = Tanh(scale=0.95)
    with pytest.warns(RuntimeWarning, match=r"did not converge: relative residual \S+ >= tol 1e-12 after max_iter=2 iterations") as caught:
        Implicit(f, solver="fixed_point", tol=1e-12, max_iter=2)(inputs(), torch.zeros(3, 6, dtype=D))
    assert caught[0].filename == __file__  # the warning points at the caller
    assert str(caught[0].message).endswith("counted in .failures, not warned again")
    layer = Implicit(f, solver="fixed_point", tol=1e-12, max_iter=2, on_fail="raise")
    with pytest.raises(RuntimeError, match=r"^Implicit forward did not converge: relative residual"):
        layer(inputs(), torch.zeros(3, 6, dtype=D))
    assert layer.last_stats is not None and not layer.last_stats.converged and layer.last_stats.residual >= 1e-12


def test_a_training_loop_gets_one_warning_and_a_count_of_every_failed_solve() -> None:
    layer = Implicit(Tanh(scale=0.95), solver="fixed_point", tol=1e-12, max_iter=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            layer(inputs(), torch.zeros(3, 6, dtype=D)).sum().backward()
    assert [str(w.message).split(":")[0] for w in caught] == ["Implicit forward did not converge", "Implicit backward did not converge"]
    assert layer.failures == {"forward": 4, "backward": 4}


def test_a_backward_that_does_not_converge_warns() -> None:
    layer = Implicit(Tanh(scale=0.95), tol=1e-10, max_iter=300, backward_max_iter=2)
    out = layer(inputs(), torch.zeros(3, 6, dtype=D))
    with pytest.warns(RuntimeWarning, match="Implicit backward did not converge.*backward_max_iter=2"):
        out.sum().backward()


def test_nan_is_an_error_never_a_silent_nan() -> None:
    class Nan(nn.Module):
        def forward(self, z: Tensor, x: Tensor) -> Tensor:
            return z * float("nan") + x

    with pytest.raises(FloatingPointError, match="NaN or inf in the fixed-point residual"):
        Implicit(Nan())(inputs())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tol": 0.0}, r"^tol=0.0: the tolerance must be > 0$"),
        ({"tol": -1e-3}, r"^tol=-0.001: "),
        ({"max_iter": 0}, r"^max_iter=0: at least one iteration$"),
        ({"solver": "newton"}, r"^solver='newton': expected one of"),
        ({"backward": "unrolled"}, r"^backward='unrolled': expected 'implicit' or 'phantom'$"),
        ({"backward_max_iter": 0}, r"^backward_max_iter=0: "),
        ({"on_fail": "ignore"}, r"^on_fail='ignore': "),
        ({"solver_kwargs": {"tol": 1e-3}}, r"^solver_kwargs sets \['tol'\]: pass max_iter and tol as the layer's own arguments$"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        Implicit(Tanh(), **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_stats_before_a_run() -> None:
    layer = Implicit(Tanh())
    assert layer.last_stats is None
    assert "solver='anderson'" in repr(layer)
    assert SolverStats(3, 1e-5, True).backward_residual is None


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 4),
    n=st.integers(1, 7),
    scale=st.floats(0.0, 0.9),
    solver=st.sampled_from(["anderson", "broyden", "fixed_point"]),
)
def test_linear_contractions_of_any_shape_and_factor(batch: int, n: int, scale: float, solver: str) -> None:
    g = torch.Generator().manual_seed(n)
    a, b = contraction(n, scale, g), torch.randn(n, 2, dtype=D, generator=g)
    x = torch.randn(batch, 2, dtype=D, generator=g)
    layer = Implicit(Linear(a, b), solver=solver, tol=1e-10, max_iter=400, on_fail="raise", solver_kwargs={"lam": 1e-12} if solver == "anderson" else None)
    z = layer(x, torch.zeros(batch, n, dtype=D))
    torch.testing.assert_close(z, closed_form(a, b, x), rtol=1e-7, atol=1e-8)
