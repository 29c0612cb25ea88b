r"""Growing or shrinking a model's vocabulary in place, each tie group and tied bias at once.

A vocabulary of :math:`V` tokens appears in a model as a dimension of size :math:`V`: the rows of
the input embedding :math:`E \in \mathbb{R}^{V\times d}`, the rows of the output layer
:math:`W \in \mathbb{R}^{V\times H}` and its bias :math:`b \in \mathbb{R}^V`, the columns of a
weight that reads :math:`E^\top` through a transposed tie. Resizing one of them alone breaks the
model or, worse, the tie (transformers issues #1730, #17580, #35141). :func:`resize_vocab` resizes
every such tensor together, *in place*: each Parameter object keeps its identity (its data is
swapped with ``param.data = ...``), so ties, parametrizations, optimizer references and hooks all
still point at it.

The package: :mod:`~tying.resize.sites` finds every registration of every Parameter and which of
them a resize drags along, :mod:`~tying.resize.plan` checks and computes the resize before
:func:`~tying.resize.plan.commit` writes it, :mod:`~tying.resize.conventions` holds the
vocabulary sizes kept outside the parameters (buffers, ``model.config``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from tying._paths import resolve, unwrap
from tying.errors import TieError
from tying.resize.plan import ResizedParameter, RowInit, VocabResize, commit, plan_resize
from tying.resize.sites import closure, discover, find_sites
from tying.verification import require_intact

__all__ = ["resize_vocab", "VocabResize", "ResizedParameter", "RowInit"]


def resize_vocab(
    model: nn.Module,
    new_size: int,
    *,
    paths: Iterable[str] | Mapping[str, int] | None = None,
    init: RowInit | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> VocabResize:
    r"""Resize the vocabulary dimension of ``model`` to ``new_size``, in place, keeping every tie.

    **What is resized.** Every Parameter holding the vocabulary dimension, each exactly once
    however many paths (tie members) read it:

    * without ``paths``: the vocabulary embedding is the model's embedding (``nn.Embedding``,
      ``nn.EmbeddingBag``) that is tied to something — all of them if several are, which must
      then have one size :math:`V` — or, in a model without tied embeddings, its only embedding.
      Resized are those embeddings' rows and every ``nn.Linear`` (subclasses included, e.g.
      :class:`tying.nn.TiedOutput`) with ``out_features == V`` (an output layer), with its bias;
      and through their Parameters every other path of their tie groups: a transposed target
      along its dimension 1 (``in_features`` of a ``Linear(V, d)``), a tied output bias held
      elsewhere (BERT's ``cls.predictions.bias``) with the decoder's bias. Anything it cannot
      tell apart — several untied embeddings, an untied embedding with :math:`V` rows beside a
      tied one (a position embedding, or a second vocabulary?) — is an error asking for
      ``paths``; an untied ``Linear(V, d)`` is not taken for a vocabulary layer;
    * with ``paths=[...]``: the named parameters along dimension 0 of the Parameter's own layout
      (a transposed target thus names its source's rows), or ``paths={path: dim}`` along
      dimension ``dim`` *as that path reads it*; plus their tie groups and module companions as
      above. All must have the same size;
    * either way, known vocabulary *buffers* whose vocabulary dimension has the old size: the
      ``final_logits_bias`` of shape ``(1, V)`` that transformers' BART, mBART, Marian, Pegasus
      and Blenderbot add to the logits (a buffer ties to nothing, so it is found by name).

    Module attributes follow (``num_embeddings`` or ``embedding_dim``; ``out_features`` or
    ``in_features``). So does the configuration, as transformers' ``resize_token_embeddings``
    updates it: each of ``vocab_size`` and ``decoder_vocab_size`` (Marian's output vocabulary)
    that holds the old size in ``model.config`` — a Hugging Face config or a dataclass (a frozen
    one is replaced with :func:`dataclasses.replace`) — and, for a composite transformers config,
    in its text sub-config (``config.get_text_config()``, e.g. Llava's ``text_config``), and the
    ``vocab_size`` attribute of each module reading one of those configs. The losses of
    transformers models read the config, and ``type(model)(model.config)`` builds a model of the
    new shapes (to load a checkpoint of the resized model into). The tie spec is unchanged: it
    names paths, not sizes.

    **Values.** The first :math:`\min(V, V')` entries along the vocabulary dimension keep their
    exact values (shrinking keeps the first ``new_size`` tokens), so the logits of the kept tokens
    do not change. New entries are initialised once per Parameter (and buffer), so a tie group's
    new rows are one draw that every member reads. By default each new entry is the **mean of
    the existing entries** along the vocabulary dimension: a new embedding row is the average
    embedding and a new output bias the average bias, so a new token's logit starts at the
    average logit rather than a random, possibly dominant, one (Hewitt 2021, "Initializing new
    word embeddings for pretrained language models"), and the result is deterministic.
    ``init(path, old, new)`` replaces it: called once per resized Parameter with its canonical
    path (the declared source, else the first path) and once per resized buffer with its path,
    the existing entries and the new ones (views, vocabulary dimension first), it fills ``new``
    in place — e.g. ``lambda path, old, new: new.normal_(0, float(old.std()))``. An embedding's
    ``padding_idx`` row is kept; shrinking below it is an error. An existing ``.grad`` is resized
    like the values, with zeros for the new entries.

    **Optimizer.** No Parameter object is replaced (each keeps its identity; its ``.data`` is
    swapped), so ``optimizer.param_groups`` needs no change. When ``optimizer`` is passed its
    per-parameter state is resized: each state tensor with the Parameter's old shape (SGD's
    ``momentum_buffer``, Adam's ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) keeps the kept
    entries exactly and gets zeros for the new ones; scalar state (Adam's ``step``) is left
    as is, so new entries share their Parameter's step count and bias correction — with zero
    moments, their first Adam updates are larger than a fresh optimizer's (about
    :math:`(1-\beta_1)/\sqrt{1-\beta_2} \approx 3.2` learning rates at the default betas,
    decaying). State of any other shape is refused before anything changes. Without
    ``optimizer``, build the optimizer after resizing: an existing one's state no longer fits.

    All checks run, and all new tensors (``init`` included) are computed, before the model is
    changed. Returns a :class:`VocabResize`; :func:`tying.verify` holds afterwards as before.

    Unlike transformers' ``resize_token_embeddings``, which builds new modules and re-ties them
    with ``tie_weights`` (only the ties the model declares), no Parameter is replaced, so every
    tie holds — declared or not — and so do optimizer references and hooks.

    Raises:
        ValueError: ``new_size < 1``; no vocabulary-sized parameter; embeddings it cannot tell
            apart (pass ``paths``); named parameters of different sizes; a Parameter that would need two
            dimensions resized; a ``padding_idx`` that would be cut off; optimizer state of
            another shape.
        TieError: an unknown path; declared ties that are broken; a vocabulary Parameter sharing
            memory with a distinct Parameter (an undeclared view); a parametrization tying did not
            install.
    """
    if not isinstance(new_size, int) or isinstance(new_size, bool) or new_size < 1:
        raise ValueError(f"new_size must be an integer >= 1, got {new_size!r}")
    model = unwrap(model)
    require_intact(model, TieError, f"cannot resize the vocabulary of {type(model).__name__}", "call tying.retie(model) first")
    sites = find_sites(model)
    if paths is None:
        seeds = discover(model, sites)
    else:
        as_read = isinstance(paths, Mapping)
        site_of = {p: s for s in sites for p in s.paths}
        seeds = []
        named: Iterable[tuple[str, int]] = paths.items() if isinstance(paths, Mapping) else ((p, 0) for p in paths)
        for path, dim in named:
            resolve(model, path)  # an unknown path raises here, naming what is there instead
            s = site_of[path]
            ndim = len(s.read_shape())
            if not -ndim <= dim < ndim:
                raise ValueError(f"{path!r} (shape {list(s.read_shape())}) has no dimension {dim} to resize")
            seeds.append((s, dim % ndim if as_read else s.read_dim(dim)))
        if not seeds:
            raise ValueError("paths names no parameter; pass paths=None to find the vocabulary parameters")
    return commit(plan_resize(model, sites, closure(sites, seeds), new_size, init, optimizer))
