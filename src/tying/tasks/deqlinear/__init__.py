"""Deep-equilibrium linear models against shallow and finite-depth ones (``task = "deq-linear"``):
Kawaguchi's linear-rate global convergence (arXiv 2102.07346) on scikit-learn's bundled diabetes
data. The model is :class:`tying.models.DEQLinear`."""

from tying.tasks.deqlinear.data import Regression, least_squares_optimum, load_diabetes_split
from tying.tasks.deqlinear.task import DEQLinearData, DEQLinearModel, DEQLinearTask, DEQLinearTrain, linear_rate

__all__ = [
    "DEQLinearData",
    "DEQLinearModel",
    "DEQLinearTask",
    "DEQLinearTrain",
    "Regression",
    "least_squares_optimum",
    "linear_rate",
    "load_diabetes_split",
]
