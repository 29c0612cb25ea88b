r"""Growing or shrinking a model's vocabulary in place, each tie group and tied bias at once.

A vocabulary of :math:`V` tokens appears in a model as a dimension of size :math:`V`: the rows of
the input embedding :math:`E \in \mathbb{R}^{V\times d}`, the rows of the output layer
:math:`W \in \mathbb{R}^{V\times H}` and its bias :math:`b \in \mathbb{R}^V`, the columns of a
weight that reads :math:`E^\top` through a transposed tie. Resizing one of them alone breaks the
model or, worse, the tie (transformers issues #1730, #17580, #35141). :func:`resize_vocab` resizes
every such tensor together, *in place*: each Parameter object keeps its identity (its data is
swapped with ``param.data = ...``), so ties, parametrizations, optimizer references and hooks all
still point at it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from tying._paths import logical_path, parametrization_list, registrations, resolve, unwrap
from tying.verification import require_intact
from tying.discovery import find_ties
from tying.errors import TieError
from tying.hf import VOCAB_BUFFERS, vocab_config_entries
from tying.spec import get_spec
from tying.transforms import is_tying_parametrization

__all__ = ["resize_vocab", "VocabResize", "ResizedParameter", "RowInit"]

#: ``init(path, old, new)``: fill ``new`` (the new rows, vocabulary dimension first) in place,
#: given ``old`` (the existing rows, vocabulary dimension first) of the Parameter (or vocabulary
#: buffer) at ``path``.
RowInit = Callable[[str, torch.Tensor, torch.Tensor], None]

# (module type, parameter name, dimension as the module reads it) -> the attribute holding that
# dimension's size. Parameters of one module mapped to one attribute are resized together
# (a Linear's weight rows and its bias), and the attribute is set to the new size.
_SIZE_ATTRIBUTES: dict[tuple[type[nn.Module], str, int], str] = {
    (nn.Embedding, "weight", 0): "num_embeddings",
    (nn.Embedding, "weight", 1): "embedding_dim",  # an embedding reading a vocabulary matrix transposed
    (nn.EmbeddingBag, "weight", 0): "num_embeddings",
    (nn.EmbeddingBag, "weight", 1): "embedding_dim",
    (nn.Linear, "weight", 0): "out_features",
    (nn.Linear, "weight", 1): "in_features",
    (nn.Linear, "bias", 0): "out_features",
}


def _size_attribute(module: nn.Module, name: str, dim: int) -> str | None:
    return next((a for (cls, n, d), a in _SIZE_ATTRIBUTES.items() if n == name and d == dim and isinstance(module, cls)), None)


@dataclass(frozen=True)
class ResizedParameter:
    """One resized Parameter object: every path reading it (canonical path first: the declared
    source, else the first in ``named_parameters`` order), the dimension resized in its own
    layout, and its shapes."""

    paths: tuple[str, ...]
    dim: int
    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]


@dataclass(frozen=True)
class VocabResize:
    """What :func:`resize_vocab` did."""

    old_size: int
    new_size: int
    parameters: tuple[ResizedParameter, ...]
    #: ``"<path>: <state key>"`` for each optimizer state tensor resized.
    optimizer_state: tuple[str, ...] = ()
    #: Vocabulary buffers resized (``final_logits_bias``), recorded like parameters.
    buffers: tuple[ResizedParameter, ...] = ()


@dataclass
class _Site:
    """One registration of a Parameter: ``module.<name>`` reads ``param``, transposed or not, or
    through a parametrization tying did not install (``foreign`` names it). ``paths``: every path
    naming it (a module registered under several paths), ``path`` the first."""

    paths: tuple[str, ...]
    module: nn.Module
    name: str
    param: nn.Parameter
    transposed: bool = False
    foreign: str | None = None

    @property
    def path(self) -> str:
        return self.paths[0]

    def read_dim(self, dim: int) -> int:
        """The dimension the module sees for dimension ``dim`` of the Parameter (and back)."""
        return {0: 1, 1: 0}.get(dim, dim) if self.transposed else dim

    def read_shape(self) -> tuple[int, ...]:
        shape = tuple(self.param.shape)
        return (shape[1], shape[0], *shape[2:]) if self.transposed else shape


def _sites(model: nn.Module) -> list[_Site]:
    sites = []
    for reg in registrations(model):
        paths = tuple(dict.fromkeys(logical_path(k, model) for k in reg.keys))
        if ".parametrizations." in f".{paths[0]}":  # ``originalN`` of a parametrization of several tensors
            sites.append(_Site(paths, reg.module, reg.name, reg.param, foreign="a parametrization of several tensors"))
            continue
        ref = resolve(model, paths[0])
        transform = is_tying_parametrization(ref.owner, ref.name) if ref.parametrized else None
        if ref.parametrized and transform != "transpose":
            plist = parametrization_list(ref.owner, ref.name)
            sites.append(_Site(paths, ref.owner, ref.name, reg.param, foreign=f"parametrization {type(plist[0]).__name__}"))
        else:
            sites.append(_Site(paths, ref.owner, ref.name, reg.param, transposed=ref.parametrized))
    return sites


def _discover(model: nn.Module, sites: list[_Site]) -> list[tuple[_Site, int]]:
    """Seeds ``(site, dimension as read)`` when the caller names no paths (see :func:`resize_vocab`)."""
    readers: dict[int, int] = {}
    for s in sites:
        readers[id(s.param)] = readers.get(id(s.param), 0) + 1
    name, hint = type(model).__name__, "name the vocabulary parameters with paths=[...]"
    embeddings = [s for s in sites if _size_attribute(s.module, s.name, 0) == "num_embeddings"]
    if not embeddings:
        raise ValueError(f"no vocabulary-sized parameter found in {name}: it has no nn.Embedding; {hint}")

    def listing(group: list[_Site]) -> str:
        return ", ".join(f"{s.path!r} {list(s.read_shape())}" for s in group)

    tied = [s for s in embeddings if readers[id(s.param)] > 1]
    if not tied and len({id(s.param) for s in embeddings}) > 1:
        raise ValueError(f"cannot tell which embedding of {name} holds the vocabulary: none is tied ({listing(embeddings)}); {hint}")
    anchors = tied or embeddings
    sizes = {s.read_shape()[0] for s in anchors}
    if len(sizes) > 1:
        raise ValueError(f"cannot tell the vocabulary size of {name}: its tied embeddings differ ({listing(anchors)}); {hint}")
    vocab = sizes.pop()
    # An untied embedding of the same size beside tied ones may be a position embedding or a
    # second vocabulary embedding: refuse to guess.
    lookalikes = [s for s in embeddings if readers[id(s.param)] == 1 and s.read_shape()[0] == vocab] if tied else []
    if lookalikes:
        raise ValueError(
            f"cannot tell whether {listing(lookalikes)} of {name} holds the vocabulary: it has {vocab} rows like the "
            f"tied embedding {anchors[0].path!r} but is not tied to it; {hint}"
        )
    outputs = [s for s in sites if _size_attribute(s.module, s.name, 0) == "out_features" and s.read_shape()[0] == vocab]
    return [(s, 0) for s in (*anchors, *outputs)]


def _closure(sites: list[_Site], seeds: list[tuple[_Site, int]]) -> dict[int, int]:
    """``{id(param): dimension to resize, in the Parameter's layout}``: the seeds' Parameters and
    every Parameter they drag along — the other parameters of a module whose size attribute
    changes (a Linear's bias with its weight rows), and through them their own tie groups."""
    by_param: dict[int, list[_Site]] = {}
    by_module: dict[int, list[_Site]] = {}
    for s in sites:
        by_param.setdefault(id(s.param), []).append(s)
        by_module.setdefault(id(s.module), []).append(s)
    dims: dict[int, tuple[int, str]] = {}
    todo = [(s.param, s.read_dim(d), s.path) for s, d in seeds]  # read_dim is its own inverse
    while todo:
        param, dim, why = todo.pop()
        if id(param) in dims:
            have, first = dims[id(param)]
            if have != dim:
                raise ValueError(
                    f"cannot resize {by_param[id(param)][0].path!r} (shape {list(param.shape)}) along dimension {have} "
                    f"(for {first!r}) and dimension {dim} (for {why!r}) at once"
                )
            continue
        dims[id(param)] = (dim, why)
        for s in by_param[id(param)]:
            if s.foreign:
                raise TieError(
                    f"cannot resize {s.path!r} (for {why!r}): it is computed by {s.foreign}, which tying cannot resize; "
                    "remove it first"
                )
            attribute = _size_attribute(s.module, s.name, s.read_dim(dim))
            for other in by_module[id(s.module)] if attribute else ():
                for d in range(other.param.dim()):
                    if other.param is not param and _size_attribute(other.module, other.name, other.read_dim(d)) == attribute:
                        todo.append((other.param, d, s.path))
    return {pid: d for pid, (d, _) in dims.items()}


def _resized(t: torch.Tensor, dim: int, size: int, fill: Callable[[torch.Tensor, torch.Tensor], None] | None) -> torch.Tensor:
    """``t`` with ``size`` entries along ``dim``: its first ones kept exactly, new ones filled by
    ``fill(old, new)`` (both with ``dim`` moved first) or zero."""
    keep = min(t.shape[dim], size)
    shape = list(t.shape)
    shape[dim] = size
    out = t.new_zeros(shape)
    out.narrow(dim, 0, keep).copy_(t.narrow(dim, 0, keep))
    if size > keep and fill is not None:
        fill(t.movedim(dim, 0), out.narrow(dim, keep, size - keep).movedim(dim, 0))
    return out


def _mean_rows(old: torch.Tensor, new: torch.Tensor) -> None:
    new.copy_(old.mean(0, keepdim=True).expand_as(new))


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
    sites = _sites(model)
    if paths is None:
        seeds = _discover(model, sites)
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
    return _apply(model, sites, _closure(sites, seeds), new_size, init, optimizer)


def _apply(
    model: nn.Module,
    sites: list[_Site],
    dims: dict[int, int],
    new_size: int,
    init: RowInit | None,
    optimizer: torch.optim.Optimizer | None,
) -> VocabResize:
    groups: dict[int, list[_Site]] = {}
    for s in sites:
        if id(s.param) in dims:
            groups.setdefault(id(s.param), []).append(s)
    sources = {t.source for t in get_spec(model).ties}
    # (Parameter, dimension to resize, its paths with the canonical one first)
    plan: list[tuple[nn.Parameter, int, tuple[str, ...]]] = []
    for pid, members in groups.items():
        member_paths = [p for s in members for p in s.paths]
        canonical = next((p for p in member_paths if p in sources), member_paths[0])
        plan.append((members[0].param, dims[pid], (canonical, *(p for p in member_paths if p != canonical))))
    sizes = {param.shape[dim] for param, dim, _ in plan}
    if len(sizes) > 1:
        listing = ", ".join(
            f"{paths[0]!r} has {param.shape[dim]} along dimension {dim} (shape {list(param.shape)})" for param, dim, paths in plan
        )
        raise ValueError(f"vocabulary sizes disagree: {listing}")
    old_size = sizes.pop()

    keyed = dict(model.named_parameters(remove_duplicate=False))
    for g in find_ties(model):
        if g.kind == "storage" and any(id(keyed[m.state_key]) in dims for m in g.members):
            raise TieError(
                f"cannot resize {', '.join(map(repr, g.paths))}: they are distinct Parameters over the same memory "
                "(views), which resizing would separate; declare the tie with tying.tie or untie them first"
            )
    for param, dim, paths in plan:
        for s in groups[id(param)]:
            pad = getattr(s.module, "padding_idx", None)
            if _size_attribute(s.module, s.name, s.read_dim(dim)) == "num_embeddings" and pad is not None and pad >= new_size:
                raise ValueError(
                    f"cannot shrink {s.path!r} to {new_size} rows: its padding_idx {pad} would be cut off; "
                    f"set padding_idx to None or a row below {new_size} first"
                )

    buffers = [
        (name, buffer, vocab_dim % buffer.dim())
        for name, buffer in model.named_buffers()
        if (vocab_dim := VOCAB_BUFFERS.get(name.rpartition(".")[2])) is not None
        and buffer.dim() > 0
        and buffer.shape[vocab_dim] == old_size
    ]

    def fill(path: str) -> Callable[[torch.Tensor, torch.Tensor], None]:
        return _mean_rows if init is None else (lambda old, new: init(path, old, new))

    # Compute everything before changing anything.
    shapes = [tuple(param.shape) for param, _, _ in plan]
    buffer_shapes = [tuple(buffer.shape) for _, buffer, _ in buffers]
    values: list[torch.Tensor] = []
    buffer_values: list[torch.Tensor] = []
    grads: list[torch.Tensor | None] = []
    state: list[tuple[dict, str, str, torch.Tensor]] = []
    configs, readers = vocab_config_entries(model, old_size)
    with torch.no_grad():
        for name, buffer, dim in buffers:
            buffer_values.append(_resized(buffer, dim, new_size, fill(name)))
        for param, dim, paths in plan:
            canonical = paths[0]
            values.append(_resized(param.detach(), dim, new_size, fill(canonical)))
            grads.append(None if param.grad is None else _resized(param.grad, dim, new_size, None))
            entries = optimizer.state.get(param, {}) if optimizer is not None else {}
            for key, value in entries.items():
                if not isinstance(value, torch.Tensor) or value.dim() == 0:
                    continue
                if value.shape != param.shape:
                    raise ValueError(
                        f"cannot resize the optimizer state {key!r} of {canonical!r}: its shape {list(value.shape)} is "
                        f"neither the parameter's {list(param.shape)} nor a scalar; create the optimizer after resizing"
                    )
                state.append((entries, key, canonical, _resized(value, dim, new_size, None)))

    for (param, _, _), value, grad in zip(plan, values, grads, strict=True):
        # A live autograd graph keeps the leaf's gradient accumulator, which records the old
        # shape and is reused by the next forward; ``.data`` of another dtype drops it (as
        # ``module.to(dtype)`` does), then the resized data goes in.
        other = torch.float32 if value.dtype == torch.float64 else torch.float64
        param.data = torch.empty(0, dtype=other, device=value.device)
        param.data = value
        if grad is not None:
            param.grad = grad
    for param, dim, _ in plan:
        for s in groups[id(param)]:
            attribute = _size_attribute(s.module, s.name, s.read_dim(dim))
            if attribute is not None:
                setattr(s.module, attribute, new_size)
    for (_, buffer, _), value in zip(buffers, buffer_values, strict=True):
        buffer.data = value  # the same tensor object, like the parameters
    for entries, key, _, value in state:
        entries[key] = value
    for config, key in configs:
        try:
            setattr(config, key, new_size)
        except dataclasses.FrozenInstanceError:  # a frozen dataclass: only ever ``model.config`` itself
            setattr(model, "config", dataclasses.replace(config, **{key: new_size}))  # type: ignore[type-var]
    for module in readers:
        setattr(module, "vocab_size", new_size)
    return VocabResize(
        old_size,
        new_size,
        tuple(
            ResizedParameter(paths, dim, shape, tuple(param.shape))
            for (param, dim, paths), shape in zip(plan, shapes, strict=True)
        ),
        tuple(f"{canonical}: {key}" for _, key, canonical, _ in state),
        tuple(
            ResizedParameter((name,), dim, shape, tuple(buffer.shape))
            for (name, buffer, dim), shape in zip(buffers, buffer_shapes, strict=True)
        ),
    )
