"""The tasks shipped with tying, one module each (:class:`tying.training.Task` subclasses,
registered by name and imported when a recipe names them, see :func:`tying.training.get_task`).

* :mod:`tying.tasks.lm`: word-level language modelling (``task = "lm"``), LSTM or Transformer.
* :mod:`tying.tasks.autoencoder`: tied and untied autoencoders on handwritten digits (``task = "autoencoder"``).
"""
