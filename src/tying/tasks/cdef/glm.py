r"""The classical peer of the CDEF task: a Poisson GLM on lagged counts and season, per series,
fitted by statsmodels (``statsmodels.api.GLM`` with the Poisson family and its log link, IRLS).

For series :math:`d` at step :math:`t`,

.. math::

    \log \mathbb{E}[x_{t,d}] = \beta_{d,0} + \sum_{j=1}^{p} \beta_{d,j} \log(1 + x_{t-j,d})
        + \sum_{j=1}^{p} \gamma_{d,j}\, \overline{\log(1 + x_{t-j})} + \sum_{m=1}^{P-1} \delta_{d,m} [t \bmod P = m],

own lags, the lags of the mean over all series (the common movement) and a month (season) dummy
when the data has a period :math:`P`. Its held-out log-likelihood per cell is
:math:`\frac{1}{TD}\sum_{t,d} \log \mathrm{Poisson}(x_{t,d} \mid \hat\mu_{t,d})`, each step conditioned on the
observed counts before it (lags reach back into earlier splits): exact, no sampling.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.distributions import Poisson

from tying.training import ExternalModel

__all__ = ["PoissonGLM", "design"]


def design(counts: torch.Tensor, start: int, stop: int, lags: int, period: int) -> torch.Tensor:
    """Regressors of steps ``start .. stop-1`` of ``counts`` ``(T, D)``: ``(stop - start, D, F)`` with
    :math:`F = 1 + 2p + (P - 1)` (intercept, own lags, lags of the cross-series mean, season dummies)."""
    logs = torch.log1p(counts)
    steps = torch.arange(start, stop)
    own = torch.stack([logs[steps - j] for j in range(1, lags + 1)], dim=-1)  # (n, D, p)
    common = own.mean(dim=1, keepdim=True).expand_as(own)
    columns = [torch.ones(len(steps), counts.shape[1], 1, dtype=counts.dtype), own, common]
    if period > 1:
        season = torch.nn.functional.one_hot(steps % period, period)[:, 1:].to(counts.dtype)
        columns.append(season.unsqueeze(1).expand(-1, counts.shape[1], -1))
    return torch.cat(columns, dim=-1)


class PoissonGLM(ExternalModel):
    """One Poisson GLM per series; ``coef`` ``(D, F)`` holds the fitted coefficients (frozen
    parameters), fitted in one call of :meth:`fit_epoch` (``train.epochs = 1``)."""

    def __init__(self, series: int, lags: int, period: int) -> None:
        super().__init__()
        self.lags, self.period = lags, period
        features = 1 + 2 * lags + max(period - 1, 0)
        self.coef = nn.Parameter(torch.zeros(series, features, dtype=torch.float64), requires_grad=False)

    def fit_epoch(self, data: Any, epoch: int) -> tuple[float, int]:
        """Fit every series' GLM on the training steps whose lags lie in the series (IRLS to
        convergence; a later epoch refits the same data). ``data``: :class:`~tying.tasks.cdef.series.Splits`."""
        import statsmodels.api as sm

        counts = data.series.counts
        start, stop = max(data.starts["train"], self.lags), data.starts["valid"]
        x, y = design(counts, start, stop, self.lags, self.period), counts[start:stop]
        total = 0.0
        for d in range(counts.shape[1]):
            result = sm.GLM(y[:, d].numpy(), x[:, d].numpy(), family=sm.families.Poisson()).fit()
            self.coef[d] = torch.from_numpy(result.params)
            total += float(result.llf)
        return -total / y.numel(), y.shape[0]

    @torch.no_grad()
    def log_likelihood(self, counts: torch.Tensor, start: int, stop: int) -> float:
        """Mean Poisson log-likelihood per cell of steps ``start .. stop-1`` of ``counts``."""
        x = design(counts, start, stop, self.lags, self.period)
        rate = torch.exp((x * self.coef).sum(-1))
        total = Poisson(rate).log_prob(counts[start:stop]).sum().item()
        return total / counts[start:stop].numel() if math.isfinite(total) else -math.inf
