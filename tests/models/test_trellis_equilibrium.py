"""The deep-equilibrium trellis (``depth = "equilibrium"``): its output and gradients are those of
the tied trellis at a depth where the stack has converged, it satisfies z* = f(z*) to the
tolerance, carries state across windows like one long window, round-trips through a checkpoint,
and rejects settings that do not mean anything for it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tying
from tying.models import TrellisConfig, TrellisLanguageModel

V, E, H = 30, 6, 5
SOLVE = {"solver": "fixed_point", "tol": 1e-11, "max_iter": 400}


def _equilibrium(k: int = 2, seed: int = 0, **solve: object) -> TrellisLanguageModel:
    torch.manual_seed(seed)
    config = TrellisConfig(V, E, H, levels=1, kernel_size=k, depth="equilibrium", init_std=0.3, **{**SOLVE, **solve})  # type: ignore[arg-type]
    return TrellisLanguageModel(config).double()


def _stack(model: TrellisLanguageModel, levels: int) -> TrellisLanguageModel:
    """The tied trellis of ``levels`` levels with the equilibrium model's weights."""
    stack = TrellisLanguageModel(replace(model.config, depth="tied", levels=levels)).double()
    stack.load_state_dict(model.state_dict(), strict=False)  # levels.0.* is every level's weight
    assert stack.levels[levels - 1].weight_h is stack.levels[0].weight_h
    return stack


def test_the_fixed_point_is_the_tied_stack_run_deep_enough_and_satisfies_f_z_equals_z() -> None:
    model = _equilibrium().eval()
    tokens = torch.randint(0, V, (7, 3))
    logits, _ = model(tokens, model.init_state(3))
    stats = model.equilibrium.last_stats  # type: ignore[union-attr]
    assert stats is not None and stats.converged and stats.residual < 1e-11
    deep = _stack(model, 200)
    torch.testing.assert_close(logits, deep(tokens, deep.init_state(3))[0], rtol=0, atol=1e-9)
    shallow = _stack(model, 2)  # the solve is not a shallow stack: the check above can fail
    assert not torch.allclose(logits, shallow(tokens, shallow.init_state(3))[0], atol=1e-6)


def test_implicit_gradients_equal_the_deep_stacks() -> None:
    model, tokens = _equilibrium(k=3), torch.randint(0, V, (6, 2))
    deep = _stack(model, 200)
    for m in (model, deep):
        logits, _ = m(tokens, m.init_state(2))
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    for name in ("weight_x", "weight_h", "bias"):
        torch.testing.assert_close(getattr(model.levels[0], name).grad, getattr(deep.levels[0], name).grad, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(model.encoder.weight.grad, deep.encoder.weight.grad, rtol=1e-6, atol=1e-9)


def test_state_carried_across_windows_gives_the_one_long_window() -> None:
    model = _equilibrium(k=3).eval()
    tokens = torch.randint(0, V, (9, 2))
    whole, _ = model(tokens, model.init_state(2))
    a, state = model(tokens[:4], model.init_state(2))
    b, _ = model(tokens[4:], state)
    torch.testing.assert_close(torch.cat([a, b]), whole, rtol=0, atol=1e-9)


def test_save_load_round_trip_and_one_level_of_weights(tmp_path: Path) -> None:
    model = _equilibrium().eval()
    path = tying.save(model, tmp_path / "deq.safetensors")
    fresh = _equilibrium(seed=7).eval()
    tying.load(fresh, path)
    tokens = torch.randint(0, V, (5, 2))
    torch.testing.assert_close(fresh(tokens, fresh.init_state(2))[0], model(tokens, model.init_state(2))[0], rtol=0, atol=0)
    trellis = TrellisLanguageModel(replace(model.config, depth="tied", levels=4))
    assert tying.summary(model).unique_parameters == tying.summary(trellis).unique_parameters


def test_a_solve_that_stops_early_warns_with_the_residual() -> None:
    model = _equilibrium(max_iter=2).eval()
    with pytest.warns(RuntimeWarning, match=r"^Implicit forward did not converge: relative residual \S+ >= tol 1e-11 after max_iter=2"):
        model(torch.randint(0, V, (6, 2)), model.init_state(2))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"levels": 8}, r"^levels=8 with depth='equilibrium': the equilibrium model runs one level to its fixed point; set levels = 1"),
        ({"tol": 0.0}, r"^tol must be > 0, got 0.0$"),
        ({"max_iter": 0}, r"^max_iter must be >= 1, got 0$"),
    ],
)
def test_bad_settings_are_one_line_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrellisConfig(V, **{"depth": "equilibrium", "levels": 1, **changes})  # type: ignore[arg-type]
