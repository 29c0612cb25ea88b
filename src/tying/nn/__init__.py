"""Layers built on :mod:`tying.functional`: output classifiers and dropout (:mod:`tying.nn.layers`)
and the implicit, deep-equilibrium layer that runs a weight-tied block to its fixed point
(:mod:`tying.nn.implicit`; its solvers come from torchdeq, ``pip install 'tying[deq]'``)."""

from tying.nn.implicit import Implicit, SolverStats
from tying.nn.layers import JointActivation, JointOutput, LockedDropout, TiedOutput, embedding_dropout

__all__ = ["TiedOutput", "JointOutput", "JointActivation", "LockedDropout", "embedding_dropout", "Implicit", "SolverStats"]
