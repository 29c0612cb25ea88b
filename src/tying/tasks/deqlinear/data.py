"""scikit-learn's bundled diabetes regression data (442 patients, 10 features; no download),
standardised, split into train and test rows, and the least-squares optimum of the training rows."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Regression", "load_diabetes_split", "least_squares_optimum"]


@dataclass
class Regression:
    """Rows of inputs ``(N, d)`` and targets ``(N, 1)`` (float64) of each split, and the training
    rows' global minimum of the mean squared error over linear maps (:func:`least_squares_optimum`)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    optimum: float


def least_squares_optimum(x: torch.Tensor, y: torch.Tensor) -> float:
    """:math:`\\min_W \\frac1N\\|x W - y\\|^2` (no bias: the models have none), by ``torch.linalg.lstsq``."""
    w = torch.linalg.lstsq(x, y).solution
    return float((x @ w - y).square().mean())


def load_diabetes_split(test_fraction: float, seed: int) -> Regression:
    """Features and target standardised over all rows (so no bias is needed), then
    ``test_fraction`` of the rows (a permutation seeded with ``seed``) held out."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64).unsqueeze(1)
    xt = (xt - xt.mean(0)) / xt.std(0)
    yt = (yt - yt.mean()) / yt.std()
    order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(xt) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Regression(xt[train], yt[train], xt[test], yt[test], least_squares_optimum(xt[train], yt[train]))
