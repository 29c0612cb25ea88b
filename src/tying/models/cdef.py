r"""A deep exponential family over multivariate count time series, with its weights tied over time
(a *convolutional* DEF; Hong & Shelton, arXiv 2110.14800, after the DEFs of Ranganath et al. 2015).

A series of :math:`D` counts is cut into windows of :math:`W` steps, each window one example with
its own latent variables. Latent layer :math:`l = 1 \dots L` holds :math:`K_l` non-negative
variables per step, :math:`z^l_t \in \mathbb{R}_+^{K_l}`; the top layer is drawn from a gamma prior of
shape :math:`\alpha` and mean 1, every lower layer from a gamma of shape :math:`\alpha` whose mean is
a non-negative combination of the layer above at the last :math:`R` steps, and the counts from a
Poisson of the same form (:math:`z^0 = x`, :math:`K_0 = D`):

.. math::

    z^{L}_{t,k} \sim \mathrm{Gamma}(\alpha, \alpha), \qquad
    \mu^{l}_{t} = b^l + \sum_{\tau=0}^{R-1} A^{l}_{t,\tau}\, z^{l+1}_{t-\tau}, \qquad
    z^{l}_{t,k} \sim \mathrm{Gamma}(\alpha, \alpha / \mu^l_{t,k}), \qquad
    x_{t,d} \sim \mathrm{Poisson}(s_d\, \mu^0_{t,d}),

with :math:`A^l_{t,\tau} = \mathrm{softplus}(\cdot) \in \mathbb{R}_+^{K_l \times K_{l+1}}`, steps before
the window's start read as zero, :math:`b^l = \mathrm{softplus}(\cdot)` a per-unit baseline and
:math:`s` a fixed per-series scale (the training mean, a buffer). The three variants differ only in
:math:`A`:

* ``"tied"``: one kernel :math:`A^l_\tau` for every step :math:`t`, a causal convolution over time.
  Each layer keeps one kernel module per step (``layers.<l>.steps.<t>``) and the steps are tied by
  ``tying.share_layers`` (one visible line in :class:`CDEF`), so ``tying.summary`` and ``tying.save``
  show one kernel read at every step and its gradient sums every step's.
* ``"untied"``: a kernel per step :math:`A^l_{t,\tau}` (the same receptive field of :math:`R` steps),
  :math:`W` times the weights.
* ``"dense"``: a plain DEF, no temporal structure: :math:`R = 1` and one weight matrix for all steps,
  each step an exchangeable observation (a broadcast matrix product; no tie to declare).

Inference is variational: :math:`q(z^l_{t,k} \mid x) = \mathrm{Gamma}(a, b)` with :math:`a, b` from an
encoder that is the same in every variant (a ``Conv1d`` over :math:`\log(1 + x/s)` reading steps
:math:`t \dots t+R-1`, then a pointwise ``Conv1d``; a convolution, i.e. itself tied over time).
:meth:`CDEF.elbo` is the reparameterised evidence lower bound (``torch.distributions.Gamma.rsample``),
:meth:`CDEF.log_marginal` the importance-weighted estimate of :math:`\log p(x)` with :math:`K` samples
of :math:`q` (Burda et al. 2016), a lower bound in expectation that tightens as :math:`K` grows.
The weights are point estimates (no prior on them): the model is fitted by maximising the ELBO over
weights and encoder together. :func:`parameter_count` gives the unique parameter count in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Gamma, Poisson

from tying.constraints import Range, check_ranges
from tying.sharing import share_layers

__all__ = ["CDEF", "CDEFConfig", "Variant", "parameter_count"]

Variant = Literal["tied", "untied", "dense"]
_VARIANTS = ("tied", "untied", "dense")
_MIN_SHAPE = 1e-2  # floor of the variational shapes and rates: gamma samples of tinier shapes underflow


@dataclass(frozen=True)
class CDEFConfig:
    """Sizes of a :class:`CDEF`.

    Attributes:
        series: :math:`D`, counts per step.
        window: :math:`W`, steps per example.
        widths: :math:`(K_1, \\dots, K_L)`, latent variables per step, bottom layer first.
        kernel: :math:`R`, steps each layer reads (``"dense"``: ignored, 1).
        variant: ``"tied"``, ``"untied"`` or ``"dense"`` (module docstring).
        shape: :math:`\\alpha`, the gamma shape of every latent layer.
        encoder_hidden: channels of the encoder's hidden layer.
    """

    series: Annotated[int, Range(ge=1)]
    window: Annotated[int, Range(ge=1)] = 12
    widths: tuple[int, ...] = (3,)
    kernel: Annotated[int, Range(ge=1)] = 3
    variant: Variant = "tied"
    shape: Annotated[float, Range(gt=0)] = 1.0
    encoder_hidden: Annotated[int, Range(ge=1)] = 16

    def __post_init__(self) -> None:
        check_ranges(self)
        object.__setattr__(self, "widths", tuple(self.widths))  # a recipe's list, kept as a tuple
        if not self.widths or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in self.widths):
            raise ValueError(f"widths must be one or more positive integers (latent variables per step, bottom layer first), got {self.widths!r}")
        if self.variant not in _VARIANTS:
            raise ValueError(f"variant {self.variant!r} is not one of {', '.join(_VARIANTS)}")

    @property
    def reach(self) -> int:
        """:math:`R` as the model uses it: 1 for ``"dense"``, else ``kernel``."""
        return 1 if self.variant == "dense" else self.kernel


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class StepKernel(nn.Module):
    """The weights one step reads: ``weight`` ``(R, out, in)``, before the softplus."""

    def __init__(self, reach: int, out: int, inp: int, generator: torch.Generator) -> None:
        super().__init__()
        start = _inverse_softplus(0.5 / (reach * inp))  # the mean starts near baseline + 0.5 under z ~ 1
        self.weight = nn.Parameter(start + 0.3 * torch.randn(reach, out, inp, generator=generator))


class TemporalLayer(nn.Module):
    """:math:`\\mu_t = b + \\sum_\\tau A_{t,\\tau} z_{t-\\tau}`; ``steps``: one :class:`StepKernel` per
    step (a single one for ``"dense"``, broadcast to every step), ``bias``: :math:`b` before the softplus."""

    def __init__(self, config: CDEFConfig, out: int, inp: int, generator: torch.Generator) -> None:
        super().__init__()
        count = 1 if config.variant == "dense" else config.window
        self.steps = nn.ModuleList(StepKernel(config.reach, out, inp, generator) for _ in range(count))
        self.bias = nn.Parameter(torch.full((out,), _inverse_softplus(0.5)))

    def kernels(self, window: int) -> torch.Tensor:
        """:math:`A` of every step, ``(W, R, out, in)``, non-negative."""
        stacked = torch.stack([F.softplus(step.weight) for step in self.steps if isinstance(step, StepKernel)])
        return stacked.expand(window, *stacked.shape[1:])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(N, W, in)`` -> the mean of the layer below, ``(N, W, out)``."""
        window = z.shape[1]
        a = self.kernels(window)
        lagged = torch.stack([F.pad(z, (0, 0, tau, 0))[:, :window] for tau in range(a.shape[1])], dim=2)  # (N, W, R, in)
        return torch.einsum("ntri,troi->nto", lagged, a) + F.softplus(self.bias)


class CDEF(nn.Module):
    """The model of ``config`` (module docstring). ``scale``: :math:`s`, ``(D,)`` positive (default 1).

    ``layers[l]`` maps latent layer :math:`l+1` to the mean of layer :math:`l` (``layers[0]``: the
    Poisson rates over :math:`s`); ``encoder`` gives the variational shapes and rates.
    Windows are ``(N, W, D)`` count tensors.
    """

    scale: torch.Tensor

    def __init__(self, config: CDEFConfig, scale: torch.Tensor | None = None, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        g = torch.Generator().manual_seed(seed)
        below = (config.series, *config.widths)
        self.layers = nn.ModuleList(TemporalLayer(config, below[l], below[l + 1], g) for l in range(len(config.widths)))
        if config.variant == "tied":
            for l in range(len(self.layers)):
                share_layers(self, f"layers.{l}.steps")  # one kernel read at every time step
        hidden, total = config.encoder_hidden, sum(config.widths)
        head = nn.Conv1d(hidden, 2 * total, 1)
        assert head.bias is not None
        nn.init.constant_(head.bias, _inverse_softplus(5.0))  # q starts near Gamma(5, 5): mean 1
        self.encoder = nn.Sequential(nn.Conv1d(config.series, hidden, config.kernel), nn.Softplus(), head)
        self.register_buffer("scale", torch.ones(config.series) if scale is None else scale.detach().clone().float())

    def posterior(self, x: torch.Tensor) -> list[Gamma]:
        """:math:`q(z^l \\mid x)` of each layer, bottom first, batch shape ``(N, W, K_l)``."""
        h = torch.log1p(x / self.scale).transpose(1, 2)  # (N, D, W)
        out = self.encoder(F.pad(h, (0, self.config.kernel - 1))).transpose(1, 2)  # step t reads x_t .. x_{t+R-1}
        params = F.softplus(out) + _MIN_SHAPE
        shapes, rates = params.split(sum(self.config.widths), dim=-1)
        return [Gamma(a, b) for a, b in zip(shapes.split(self.config.widths, -1), rates.split(self.config.widths, -1))]

    def log_joint(self, x: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
        """:math:`\\log p(x, z)` per window: ``x`` ``(N, W, D)``, ``zs[l]`` ``(S, N, W, K_{l+1})``
        -> ``(S, N)``."""
        alpha = self.config.shape
        top = torch.tensor(alpha, dtype=zs[-1].dtype)
        total = Gamma(top, top).log_prob(zs[-1]).sum((-2, -1))
        for l in reversed(range(len(self.layers))):
            above = zs[l]
            mean = self.layers[l](above.flatten(0, 1)).unflatten(0, above.shape[:2])
            if l == 0:
                total = total + Poisson(mean * self.scale).log_prob(x).sum((-2, -1))
            else:
                total = total + Gamma(torch.full_like(mean, alpha), alpha / mean).log_prob(zs[l - 1]).sum((-2, -1))
        return total

    def log_weights(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """:math:`\\log p(x, z_s) - \\log q(z_s \\mid x)` for ``samples`` reparameterised draws
        :math:`z_s \\sim q`, ``(S, N)``."""
        qs = self.posterior(x)
        zs = [q.rsample((samples,)) for q in qs]
        log_q = sum(q.log_prob(z).sum((-2, -1)) for q, z in zip(qs, zs))
        return self.log_joint(x, zs) - log_q

    def elbo(self, x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """The evidence lower bound per window, ``(N,)``: the mean of ``samples`` single-draw estimates."""
        return self.log_weights(x, samples).mean(0)

    @torch.no_grad()
    def log_marginal(self, x: torch.Tensor, samples: int = 64, chunk: int = 16) -> torch.Tensor:
        """Importance-weighted :math:`\\log p(x)` per window, ``(N,)``:
        :math:`\\log \\frac1K \\sum_k p(x, z_k) / q(z_k \\mid x)`, :math:`K` = ``samples`` (drawn ``chunk`` at a time)."""
        parts = [self.log_weights(x, min(chunk, samples - start)) for start in range(0, samples, chunk)]
        return torch.logsumexp(torch.cat(parts), dim=0) - math.log(samples)

    def count_kernels(self) -> torch.Tensor:
        """The bottom layer's kernels in counts, :math:`s_d A^0_{t,\tau,d,k}`, ``(W, R, D, K_1)``: the
        expected counts of series :math:`d` at step :math:`t` that a unit of factor :math:`k` at step :math:`t - \tau` adds."""
        layer = self.layers[0]
        assert isinstance(layer, TemporalLayer)
        return layer.kernels(self.config.window) * self.scale.view(1, 1, -1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The single-draw ELBO per window (the training objective, to maximise)."""
        return self.elbo(x)


def parameter_count(config: CDEFConfig) -> int:
    """Unique parameters of ``CDEF(config)``: per layer the kernels (``"tied"``: :math:`R\\,K_l K_{l+1}`;
    ``"untied"``: :math:`W` times that; ``"dense"``: :math:`K_l K_{l+1}`) and :math:`K_l` baselines
    (:math:`K_0 = D`), plus the encoder, :math:`D H R + H + 2H\\sum_l K_l + 2\\sum_l K_l`."""
    below = (config.series, *config.widths)
    per_step = {"tied": 1, "untied": config.window, "dense": 1}[config.variant]
    kernels = sum(per_step * config.reach * below[l] * below[l + 1] + below[l] for l in range(len(config.widths)))
    hidden, total = config.encoder_hidden, sum(config.widths)
    return kernels + config.series * hidden * config.kernel + hidden + 2 * total * (hidden + 1)
