"""The convolutional deep exponential family (tying.models.cdef): parameter counts by formula, the
ELBO against a direct computation, the importance-weighted estimate against an exact marginal,
the tied kernel as one tensor whose gradient collects every step's, save/load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import tying
from tying.models.cdef import CDEF, CDEFConfig, parameter_count


def _encoder(d: int, h: int, r: int, widths: tuple[int, ...]) -> int:
    return d * h * r + h + h * 2 * sum(widths) + 2 * sum(widths)


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 5), w=st.integers(1, 6), r=st.integers(1, 4), h=st.integers(1, 6),
    widths=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
)  # fmt: skip
def test_parameter_counts_follow_the_formula_per_variant(d: int, w: int, r: int, h: int, widths: tuple[int, ...]) -> None:
    sizes = (d, *widths)
    pairs = sum(sizes[l] * sizes[l + 1] for l in range(len(widths)))
    baselines = sum(sizes[:-1])
    expected = {
        "tied": r * pairs + baselines,  # one kernel of r steps per layer
        "untied": w * r * pairs + baselines,  # a kernel per step of the window
        "dense": pairs + baselines,  # one weight matrix, no lags
    }
    for variant, weights in expected.items():
        config = CDEFConfig(series=d, window=w, widths=widths, kernel=r, variant=variant, encoder_hidden=h)  # type: ignore[arg-type]
        model = CDEF(config)
        assert tying.summary(model).unique_parameters == parameter_count(config) == weights + _encoder(d, h, r, widths)
        assert tying.summary(model).total_parameters == (w * r * pairs if variant != "dense" else pairs) + baselines + _encoder(d, h, r, widths)


def test_bad_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"widths must be one or more positive integers .* got \(3, 0\)"):
        CDEFConfig(series=2, widths=(3, 0))
    with pytest.raises(ValueError, match=r"variant 'shared' is not one of tied, untied, dense"):
        CDEFConfig(series=2, variant="shared")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kernel must be >= 1, got 0"):
        CDEFConfig(series=2, kernel=0)


def _tiny(variant: str = "tied", **kw: object) -> CDEF:
    config = CDEFConfig(series=2, window=3, widths=(1,), kernel=2, variant=variant, shape=1.5, encoder_hidden=3, **kw)  # type: ignore[arg-type]
    return CDEF(config, torch.tensor([2.0, 0.5]), seed=1).double()


def _log_gamma(z: float, shape: float, rate: float) -> float:
    return shape * math.log(rate) - math.lgamma(shape) + (shape - 1) * math.log(z) - rate * z


def test_the_elbo_matches_a_direct_monte_carlo_computation() -> None:
    """Every term written out by hand with scalar loops: the rate of step t reads z_t and z_{t-1}."""
    model = _tiny()
    x = torch.tensor([[[3.0, 0.0], [1.0, 2.0], [5.0, 1.0]]], dtype=torch.float64)
    samples = 200
    torch.manual_seed(0)
    elbo = model.elbo(x, samples).item()
    torch.manual_seed(0)
    (q,) = model.posterior(x)
    z = q.rsample((samples,))[:, 0, :, 0].detach()  # the same draws: (S, W)
    a = F.softplus(model.layers[0].steps[0].weight).detach()  # (R, D, K) tied: every step's
    b = F.softplus(model.layers[0].bias).detach()
    qa, qb = q.concentration[0, :, 0].detach(), q.rate[0, :, 0].detach()
    direct = 0.0
    for s in range(samples):
        total = 0.0
        for t in range(3):
            zt = z[s, t].item()
            total += _log_gamma(zt, 1.5, 1.5) - _log_gamma(zt, qa[t].item(), qb[t].item())
            for d in range(2):
                mean = b[d].item() + sum(a[tau, d, 0].item() * z[s, t - tau].item() for tau in range(2) if t - tau >= 0)
                rate = model.scale[d].item() * mean
                k = x[0, t, d].item()
                total += k * math.log(rate) - rate - math.lgamma(k + 1)
        direct += total / samples
    assert elbo == pytest.approx(direct, rel=1e-10)


def test_the_importance_weighted_estimate_approaches_the_exact_marginal() -> None:
    """One cell, one factor, a vanishing baseline: x ~ Poisson(c z), z ~ Gamma(a, a) is negative binomial."""
    config = CDEFConfig(series=1, window=1, widths=(1,), kernel=1, shape=2.0, encoder_hidden=2)
    model = CDEF(config, torch.tensor([3.0])).double()
    with torch.no_grad():
        model.layers[0].bias.fill_(-40.0)  # softplus(-40) ~ 4e-18
        model.encoder[2].weight.zero_()  # q = Gamma(1, 1), wider than the posterior Gamma(2 + k, 2 + c): bounded weights
        model.encoder[2].bias.fill_(math.log(math.expm1(0.99)))
    c = 3.0 * F.softplus(model.layers[0].steps[0].weight).item()
    for k in (0, 2, 7):
        x = torch.tensor([[[float(k)]]], dtype=torch.float64)
        exact = math.lgamma(k + 2.0) - math.lgamma(2.0) - math.lgamma(k + 1) + 2.0 * math.log(2.0 / (2.0 + c)) + k * math.log(c / (2.0 + c))
        torch.manual_seed(0)
        estimate = model.log_marginal(x, samples=20000, chunk=5000).item()
        torch.manual_seed(0)
        elbo = model.elbo(x, samples=20000).item()
        assert estimate == pytest.approx(exact, abs=0.02)
        assert elbo <= estimate + 1e-9  # the bound the importance weights tighten


def test_the_tied_kernel_is_one_tensor_whose_gradient_sums_every_steps() -> None:
    tied = _tiny("tied")
    steps = tied.layers[0].steps
    assert all(step.weight is steps[0].weight for step in steps)
    assert [t.describe() for t in tying.get_spec(tied).ties] == [
        "layers.0.steps.0.weight -> layers.0.steps.1.weight",
        "layers.0.steps.0.weight -> layers.0.steps.2.weight",
    ]
    assert tying.summary(tied).unique_parameters == tying.summary(tied).total_parameters - 2 * steps[0].weight.numel()

    untied = _tiny("untied")
    untied.load_state_dict(tied.state_dict())  # every step's kernel = the tied one's values
    x = torch.tensor([[[3.0, 0.0], [1.0, 2.0], [5.0, 1.0]]], dtype=torch.float64)
    zs = [torch.tensor([[[0.7], [1.3], [0.4]]], dtype=torch.float64).unsqueeze(0)]  # fixed latents: a deterministic loss
    tied.log_joint(x, zs).sum().backward()
    untied.log_joint(x, zs).sum().backward()
    per_step = [step.weight.grad for step in untied.layers[0].steps]
    assert all(g is not None and g.abs().sum() > 0 for g in per_step)  # every step contributes
    assert torch.allclose(steps[0].weight.grad, torch.stack(per_step).sum(0), rtol=1e-12, atol=1e-15)


def test_the_tied_layer_is_a_causal_convolution() -> None:
    model = CDEF(CDEFConfig(series=3, window=7, widths=(2,), kernel=3), seed=2).double()
    z = torch.rand(4, 7, 2, dtype=torch.float64)
    a = F.softplus(model.layers[0].steps[0].weight)  # (R, D, K)
    weight = a.flip(0).permute(1, 2, 0)  # conv1d weight (D, K, R); conv1d correlates, so lag tau is tap R-1-tau
    conv = F.conv1d(F.pad(z.transpose(1, 2), (2, 0)), weight).transpose(1, 2) + F.softplus(model.layers[0].bias)
    assert torch.allclose(model.layers[0](z), conv, rtol=1e-12)


@pytest.mark.parametrize("variant", ["tied", "untied", "dense"])
def test_save_then_load_into_a_fresh_model_gives_the_same_elbo(tmp_path: Path, variant: str) -> None:
    config = CDEFConfig(series=3, window=5, widths=(2, 2), kernel=2, variant=variant)  # type: ignore[arg-type]
    model = CDEF(config, torch.tensor([1.0, 4.0, 2.0]), seed=3)
    x = torch.poisson(torch.full((4, 5, 3), 2.0, dtype=torch.float32), torch.Generator().manual_seed(0))
    torch.manual_seed(7)
    before = model.elbo(x, samples=3)
    tying.save(model, tmp_path / "cdef.safetensors")
    fresh = CDEF(config, seed=99)
    tying.load(fresh, tmp_path / "cdef.safetensors")
    torch.manual_seed(7)
    assert torch.equal(fresh.elbo(x, samples=3), before)
    assert torch.equal(fresh.scale, model.scale)
    if variant == "tied":
        assert fresh.layers[1].steps[4].weight is fresh.layers[1].steps[0].weight
