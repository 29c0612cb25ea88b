"""The sites of a resize: every registration of every Parameter, how it reads its Parameter (through
which transform), which ones hold the vocabulary and which others a resize drags along."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tying._paths import logical_path, parametrization_list, registrations, resolve
from tying.errors import TieError
from tying.transforms import Identity, TieTransform, held_transform

# (module type, parameter name, dimension as the module reads it) -> the attribute holding that
# dimension's size. Parameters of one module mapped to one attribute are resized together
# (a Linear's weight rows and its bias), and the attribute is set to the new size.
SIZE_ATTRIBUTES: dict[tuple[type[nn.Module], str, int], str] = {
    (nn.Embedding, "weight", 0): "num_embeddings",
    (nn.Embedding, "weight", 1): "embedding_dim",  # an embedding reading a vocabulary matrix transposed
    (nn.EmbeddingBag, "weight", 0): "num_embeddings",
    (nn.EmbeddingBag, "weight", 1): "embedding_dim",
    (nn.Linear, "weight", 0): "out_features",
    (nn.Linear, "weight", 1): "in_features",
    (nn.Linear, "bias", 0): "out_features",
}


def size_attribute(module: nn.Module, name: str, dim: int) -> str | None:
    """The attribute of ``module`` holding the size of dimension ``dim`` of ``module.<name>``, if any."""
    return next((a for (cls, n, d), a in SIZE_ATTRIBUTES.items() if n == name and d == dim and isinstance(module, cls)), None)


@dataclass
class Site:
    """One registration of a Parameter: ``module.<name>`` reads ``param`` through ``transform``
    (the :class:`~tying.transforms.Identity` when it holds it), or through a parametrization tying
    did not install (``foreign`` names it). ``paths``: every path naming it (a module registered
    under several paths), ``path`` the first."""

    paths: tuple[str, ...]
    module: nn.Module
    name: str
    param: nn.Parameter
    transform: type[TieTransform] = Identity
    foreign: str | None = None

    @property
    def path(self) -> str:
        return self.paths[0]

    def read_dim(self, dim: int) -> int:
        """The dimension the module sees for dimension ``dim`` of the Parameter."""
        return self.transform.read_dim(dim)

    def source_dim(self, dim: int) -> int:
        """The dimension of the Parameter the module sees as its dimension ``dim``."""
        return self.transform.source_dim(dim)

    def read_shape(self) -> tuple[int, ...]:
        return self.transform.target_shape(tuple(self.param.shape))


def find_sites(model: nn.Module) -> list[Site]:
    """Every Parameter slot of ``model`` once, as a :class:`Site`, in ``named_parameters`` order."""
    sites = []
    for reg in registrations(model):
        paths = tuple(dict.fromkeys(logical_path(k, model) for k in reg.keys))
        if ".parametrizations." in f".{paths[0]}":  # ``originalN`` of a parametrization of several tensors
            sites.append(Site(paths, reg.module, reg.name, reg.param, foreign="a parametrization of several tensors"))
            continue
        ref = resolve(model, paths[0])
        transform = held_transform(ref.owner, ref.name) if ref.parametrized else None
        if ref.parametrized and transform is None:
            plist = parametrization_list(ref.owner, ref.name)
            sites.append(Site(paths, ref.owner, ref.name, reg.param, foreign=f"parametrization {type(plist[0]).__name__}"))
        else:
            sites.append(Site(paths, ref.owner, ref.name, reg.param, type(transform) if transform is not None else Identity))
    return sites


def discover(model: nn.Module, sites: list[Site]) -> list[tuple[Site, int]]:
    """Seeds ``(site, dimension as read)`` when the caller names no paths (see :func:`resize_vocab`)."""
    readers: dict[int, int] = {}
    for s in sites:
        readers[id(s.param)] = readers.get(id(s.param), 0) + 1
    name, hint = type(model).__name__, "name the vocabulary parameters with paths=[...]"
    for s in sites:  # a parametrized embedding is no plain vocabulary matrix: never guess past it
        owner = s.path.partition(".parametrizations.")[0] if ".parametrizations." in f".{s.path}" else None
        if s.foreign and owner is not None and isinstance(model.get_submodule(owner), (nn.Embedding, nn.EmbeddingBag)):
            raise TieError(
                f"cannot resize the vocabulary of {name}: the embedding {owner!r} is computed by {s.foreign}; "
                "resize before applying it (e.g. before tying.weight_norm)"
            )
    embeddings = [s for s in sites if size_attribute(s.module, s.name, 0) == "num_embeddings"]
    if not embeddings:
        raise ValueError(f"no vocabulary-sized parameter found in {name}: it has no nn.Embedding; {hint}")

    def listing(group: list[Site]) -> str:
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
    outputs = [s for s in sites if size_attribute(s.module, s.name, 0) == "out_features" and s.read_shape()[0] == vocab]
    return [(s, 0) for s in (*anchors, *outputs)]


def closure(sites: list[Site], seeds: list[tuple[Site, int]]) -> dict[int, int]:
    """``{id(param): dimension to resize, in the Parameter's layout}``: the seeds' Parameters and
    every Parameter they drag along — the other parameters of a module whose size attribute
    changes (a Linear's bias with its weight rows), and through them their own tie groups."""
    by_param: dict[int, list[Site]] = {}
    by_module: dict[int, list[Site]] = {}
    for s in sites:
        by_param.setdefault(id(s.param), []).append(s)
        by_module.setdefault(id(s.module), []).append(s)
    dims: dict[int, tuple[int, str]] = {}
    todo = [(s.param, s.source_dim(d), s.path) for s, d in seeds]
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
            if not s.transform.resizable(dim, param.dim()):
                raise TieError(
                    f"cannot resize {s.path!r} (for {why!r}) along dimension {dim} of the Parameter it reads "
                    f"{s.transform.adjective}: its {s.transform.name} cannot follow that dimension; untie it first"
                )
            attribute = size_attribute(s.module, s.name, s.read_dim(dim))
            for other in by_module[id(s.module)] if attribute else ():
                for d in range(other.param.dim()):
                    if other.param is not param and size_attribute(other.module, other.name, other.read_dim(d)) == attribute:
                        todo.append((other.param, d, s.path))
    return {pid: d for pid, (d, _) in dims.items()}

