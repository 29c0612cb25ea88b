"""The tasks shipped with tying, one package each (a :class:`tying.training.Task` subclass and
everything specific to it: data readers, batching, losses, metrics, report figures):

* :mod:`tying.tasks.lm`: word-level language modelling (``task = "lm"``), LSTM or Transformer;
* :mod:`tying.tasks.translation`: translation with a tied Transformer (``task = "translation"``);
* :mod:`tying.tasks.autoencoder`: tied and untied autoencoders on handwritten digits (``task = "autoencoder"``);
* :mod:`tying.tasks.cdef`: convolutional deep exponential families on count time series (``task = "cdef"``);
* :mod:`tying.tasks.segmentation`: a segmentation micro-network sharing its context block across dilations, and a U-Net (``task = "segmentation"``);
* :mod:`tying.tasks.recsys`: Wide & Deep on MovieLens ratings, item table shared or not (``task = "recsys"``);
* :mod:`tying.tasks.deqlinear`: deep-equilibrium linear models against shallow and finite-depth ones, Kawaguchi's linear-rate convergence (``task = "deq-linear"``);
* :mod:`tying.tasks.sgns`: skip-gram word vectors with untied, tied and reflected context vectors, and gensim's Word2Vec (``task = "sgns"``).

Tasks never import one another: what two tasks share lives in :mod:`tying.data`,
:mod:`tying.models`, :mod:`tying.nn` or the engine (:mod:`tying.training`).

Recipes find these tasks the way they find anyone's (:mod:`tying.training.registry`): through
the ``tying.tasks`` entry points that ``pyproject.toml`` declares. :data:`BUILTIN_TASKS` is the
same table, for a source checkout whose installed metadata predates it (a test keeps the two
equal). A task package is imported only when a recipe names its task.
"""

__all__ = ["BUILTIN_TASKS"]

#: Task name -> ``"module:Class"``, as the ``tying.tasks`` entry points of ``pyproject.toml``.
BUILTIN_TASKS = {
    "autoencoder": "tying.tasks.autoencoder:AutoEncoderTask",
    "cdef": "tying.tasks.cdef:CDEFTask",
    "deq-linear": "tying.tasks.deqlinear:DEQLinearTask",
    "lm": "tying.tasks.lm:LMTask",
    "recsys": "tying.tasks.recsys:RecsysTask",
    "segmentation": "tying.tasks.segmentation:SegmentationTask",
    "sgns": "tying.tasks.sgns:SGNSTask",
    "translation": "tying.tasks.translation:TranslationTask",
}
