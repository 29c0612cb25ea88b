"""Declaring, applying and removing ties (:mod:`tying.verification` checks them).

Every function here keeps two things in step: the model's :class:`~tying.spec.TieSpec` (what the
user declared) and the module graph (which Parameter object each path holds). The spec is the
source of truth; :func:`retie` rebuilds the graph from it (:func:`tying.graph.apply_spec`) after
anything that replaced Parameters (``to_empty``, ``load_state_dict(assign=True)``, device
dispatch, adapters). Declarations are checked by :mod:`tying.checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from tying._paths import ParamRef, logical_path, resolve, slot_aliases, unwrap
from tying.checks import check_tie
from tying.errors import TieError
from tying.graph import apply_spec, drop_transform, fresh, install_transform, own_copy, plist_at, set_identity, slot, tie_broken
from tying.spec import Tie, get_spec, own_spec, remove_tie, state_key_pairs
from tying.transforms import Reflect, TieTransform, Transpose, freeze

__all__ = ["tie", "tie_transposed", "tie_reflected", "untie", "retie", "weight_norm"]


def declare(model: nn.Module, ties: Iterable[Tie], *, apply: bool = True) -> None:
    """Record ``ties`` (each from :func:`tying.checks.check_tie`) in ``model``'s spec and, with
    ``apply``, make each target hold (or read through its transform) its source's Parameter."""
    spec = own_spec(model)
    for t in ties:
        if apply:
            src, ref = resolve(model, t.source), resolve(model, t.target)
            if t.transform is None:
                set_identity(ref, src.param)
            else:
                install_transform(ref, src.param, t.make_transform())
        spec.ties.append(t)
    _ensure_hooks(model)


def _ensure_hooks(model: nn.Module) -> None:
    if not model.__dict__.get("_tying_hooks", False):  # never a wrapped model's (forwarded attributes)
        model.register_load_state_dict_pre_hook(_load_state_dict_pre_hook)
        model.register_load_state_dict_post_hook(_load_state_dict_post_hook)
        object.__setattr__(model, "_tying_hooks", True)


# --------------------------------------------------------------------------- public API


def tie(model: nn.Module, source: str, *targets: str) -> None:
    r"""Tie each of ``targets`` to ``source``: afterwards every target path holds the very same
    ``nn.Parameter`` object as ``source``, whose values are kept.

    One call ties any number of paths, e.g. three-way tying of a translation model
    (source embedding = target embedding = output layer, Press & Wolf 2017, arXiv 1608.05859):
    ``tie(model, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")``.

    A source that is itself an (untransformed) target resolves to its own source, so ties never
    chain. Re-declaring an existing tie is a no-op. The tie is recorded in the model's spec (see
    :func:`tying.get_spec`), re-applied by :func:`retie`, checked by :func:`tying.verify` and written by
    :func:`tying.save`. Tied paths must agree in shape, dtype and device.

    Raises:
        TieError: unknown path (with the closest names), a buffer or non-parameter, a path inside a
            parametrization, shape/dtype/device mismatch, or a target already tied to another source.
    """
    if not targets:
        raise TieError(f"tying.tie(model, {source!r}) names no target; pass one or more target paths")
    model = unwrap(model)
    work = get_spec(model)
    todo = []
    for target in dict.fromkeys(targets):
        t = check_tie(model, work, source, target)
        if t is not None:
            todo.append(t)
            work.ties.append(t)
    declare(model, todo)


def tie_transposed(model: nn.Module, source: str, target: str) -> None:
    r"""Tie ``target`` to the transpose of ``source``: ``target`` reads :math:`W_s^\top`
    (dims 0 and 1 swapped) and every gradient reaches the single leaf ``source``.

    This is the tied autoencoder (decoder :math:`W_d = W_e^\top`) and the fix for the common
    mistake ``nn.Parameter(w.t())``, which copies and unties. Implemented with a
    :class:`tying.transforms.Transpose` parametrization whose ``original`` *is* the source Parameter, so the
    target's module is unchanged and ``state_dict`` shows the tie as a shared tensor
    (``<target module>.parametrizations.<name>.original``).
    """
    tie_transformed(model, source, target, Transpose())


def tie_reflected(model: nn.Module, source: str, target: str, signs: Sequence[int] | torch.Tensor | Reflect) -> None:
    r"""Tie ``target`` to the reflection of ``source`` in the columns where ``signs`` is ``-1``:
    ``target`` reads :math:`C = W \operatorname{diag}(s)` (``W * signs``, one sign per entry of
    the last dimension), and every gradient reaches the single leaf ``source``.

    Skip-gram with negative sampling scores a word :math:`w` in a context :math:`c` by
    :math:`w \cdot c`. Tied plainly (:math:`C = W`) every word scores
    :math:`\lVert w \rVert^2 > 0` with itself as its own context, although words rarely occur
    next to themselves, and the model does poorly. Assylbekov & Takhanov (JAIR 2019,
    "Context vectors are reflections of word vectors in half the dimensions", arXiv 1902.09859)
    tie :math:`C = W D` instead, :math:`D` diagonal with half its entries :math:`-1`: a word's
    score with itself is then the difference of the squared norms of its two halves, no longer
    forced to be large.
    ``tying.Reflect.half_negative(dim, seed)`` draws such signs.

    ``signs`` is a sequence (or 1-D integer tensor) of the ints ``1`` and ``-1`` as long as the
    source's last dimension, or a :class:`tying.Reflect`. It is recorded in the spec and in
    checkpoint headers (the file stores :math:`W` once). Assigning ``target.weight = c`` writes
    ``c * signs`` into the source. :func:`tying.weight_norm` of the group works (the target
    reflects the normalized weight); :func:`tying.resize_vocab` keeps the tie along any dimension
    but the last. A source that is a plain tie's target resolves to its group's source, as for
    :func:`tie_transposed`.

    Raises:
        TieError: ``signs`` has another length than the source's last dimension (both named);
            ``source`` is itself a transformed (reflected, transposed) target: name its source,
            and for a reflection of a reflection multiply the two sign vectors; shapes, dtypes or
            devices differ; and everything :func:`tie` refuses.
        ValueError: ``signs`` is empty or holds anything but ``1`` and ``-1`` (index and value named).
    """
    tie_transformed(model, source, target, signs if isinstance(signs, Reflect) else Reflect(signs))


def tie_transformed(model: nn.Module, source: str, target: str, transform: TieTransform) -> None:
    """Tie ``target`` to ``transform(source)`` for any transform registered in
    :mod:`tying.transforms` (the transform's parameters are recorded in the spec); what
    :func:`tie_transposed` does for :class:`~tying.transforms.Transpose`."""
    model = unwrap(model)
    t = check_tie(model, get_spec(model), source, target, transform.name, freeze(transform.params()))
    if t is not None:
        declare(model, [t])


def untie(model: nn.Module, path: str) -> None:
    """Give ``path`` its own copy of its current values and remove it from the spec; the other
    members of its group stay tied to each other.

    The untied path holds a *new* Parameter: add it to your optimizer. Untying a group's source
    hands the group to its first remaining member (which keeps the shared Parameter object).
    A path shared by object identity without a declaration (``b.weight = a.weight``) is untied
    the same way.
    """
    model = unwrap(model)
    spec = get_spec(model)
    declared = spec.source_of(path)
    readers = spec.targets_of(path)
    if path in spec.parametrizations:
        raise TieError(
            f"cannot untie {path!r}: it is computed by {spec.parametrizations[path]['kind']} and its group reads it; "
            f"untie its targets ({', '.join(repr(t.target) for t in readers)}) one by one instead"
        )
    if declared is not None and declared.source in spec.parametrizations:
        # The target reads the parametrized source from its originals: it gets the value it reads.
        owner, name = slot(model, path)
        parametrize.remove_parametrizations(owner, name, leave_parametrized=True)
        remove_tie(model, declared)
        return
    ref = resolve(model, path)
    aliases = slot_aliases(model, path)
    if aliases:
        modules = [p.rpartition(".")[0] or "<root>" for p in (path, *aliases)]
        raise TieError(
            f"cannot untie {path!r}: it is the same slot as {', '.join(map(repr, aliases))} (one "
            f"{type(ref.owner).__name__} registered under the paths {', '.join(map(repr, modules))}), so no path of it "
            "can hold a parameter of its own; register a separate module (e.g. copy.deepcopy) under one of those paths instead"
        )
    if declared is not None:
        remove_tie(model, declared)
        if declared.transform is None:
            own_copy(ref)
        else:
            drop_transform(ref, fresh(declared.make_transform()(ref.param), ref.param))
        return
    if readers:
        _hand_over(model, ref, readers)
        return
    shared = [k for k, q in model.named_parameters(remove_duplicate=False) if q is ref.param and logical_path(k, model) != path]
    if not shared:
        raise TieError(f"{path!r} is not tied to anything; nothing to untie")
    own_copy(ref)


def _hand_over(model: nn.Module, ref: ParamRef, readers: list[Tie]) -> None:
    """Untie the source ``ref`` of the group ``readers`` read: the group stays tied without it."""
    plain = [t for t in readers if t.transform is None]
    for t in readers:
        remove_tie(model, t)
    own = own_spec(model)
    if plain:
        # The first plain target keeps the shared object; the old source gets the copy.
        heir = plain[0].target
        own.ties.extend(t.moved(heir, t.target) for t in readers if t.target != heir)
        own_copy(ref)
        return
    # Only transformed readers: the first becomes a real Parameter holding what it read;
    # readers of the same transform read the same values, so they share it.
    first = readers[0]
    same = [t for t in readers if (t.transform, t.params) == (first.transform, first.params)]
    heir_param = fresh(first.make_transform()(ref.param), ref.param)
    for t in readers:
        value = heir_param if t in same else fresh(t.make_transform()(ref.param), ref.param)
        drop_transform(resolve(model, t.target), value)
    own.ties.extend(Tie(first.target, t.target) for t in same[1:])


def weight_norm(model: nn.Module, path: str, *, dim: int = 0) -> None:
    r"""Weight-normalize a tied weight (Salimans & Kingma 2016, arXiv 1602.07868):
    :math:`W = g\,v / \lVert v \rVert` (norm over every dimension but ``dim``), with **one**
    :math:`g` and **one** :math:`v` for the whole tie group of ``path``.

    The group's source is parametrized by ``torch.nn.utils.parametrizations.weight_norm`` (its
    current value kept) and every target reads the source's normalized weight from the same
    originals, transposed targets through their transpose; so both uses' gradients reach one
    :math:`g` and one :math:`v`. The spec records it (``TieSpec.parametrizations``): it is
    written by :func:`tying.save`, re-applied by :func:`retie` (after ``to_empty``,
    ``load_state_dict(assign=True)``, :func:`tying.materialize`) and checked by :func:`tying.verify`.

    Order: declare the ties first, then call this. ``torch``'s ``weight_norm`` applied by hand to a
    tied module gives that module alone its own :math:`g, v` (the tie is then broken, and
    :func:`tying.verify` says so); tying a weight that is already weight-normalized is refused.

    Raises:
        TieError: ``path`` is in no tie group; the group's ties are broken; the source is already
            parametrized; or the group is normalized already with another ``dim``.
    """
    parametrize_group(
        model, path, {"kind": "weight_norm", "dim": dim}, "weight-normalize",
        "tying.weight_norm normalizes a tie group once for all its members (for an untied weight use "
        "torch.nn.utils.parametrizations.weight_norm)",
    )


def parametrize_group(model: nn.Module, path: str, want: dict[str, object], verb: str, untied_hint: str) -> None:
    """Put the source parametrization ``want`` (a kind of :data:`tying.transforms.SOURCE_PARAMETRIZATIONS`
    and its options) on the tie group of ``path``, recorded in the spec, every member reading it."""
    model = unwrap(model)
    spec = get_spec(model)
    declared = spec.source_of(path)
    source = path if declared is None else declared.source
    if not spec.targets_of(source):
        raise TieError(f"{path!r} is not tied; {untied_hint}")
    if source in spec.parametrizations:
        if spec.parametrizations[source] == want:
            return
        done = "normalized" if spec.parametrizations[source]["kind"] == "weight_norm" else "parametrized"
        raise TieError(f"{source!r} is {done} already as {spec.parametrizations[source]}; not again as {want}")
    broken = [f"{t.describe()}: {why}" for t in spec.targets_of(source) if (why := tie_broken(model, spec, t))]
    if broken:
        raise TieError(f"cannot {verb} {source!r}: its ties are broken ({'; '.join(broken)}); call tying.retie(model) first")
    if plist_at(model, source) is not None:
        raise TieError(f"cannot {verb} {source!r}: it is parametrized already; remove that parametrization first")
    own_spec(model).parametrizations[source] = want
    retie(model)


def retie(model: nn.Module) -> None:
    """Re-apply every declared tie so each target again holds (or reads) its source's Parameter.

    Idempotent. Call it after anything that replaced Parameters; :func:`tying.materialize`,
    :func:`tying.load` and ``load_state_dict`` (through a hook the first tie installs) call it
    for you. The source's current values win.
    """
    model = unwrap(model)
    apply_spec(model, get_spec(model))


# --------------------------------------------------------------------------- state_dict hooks


def _load_state_dict_pre_hook(
    module: nn.Module,
    state_dict: dict[str, torch.Tensor],
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """Make ``load_state_dict`` tie-aware: refuse tied entries that disagree (instead of letting the
    last key silently win) and fill a target's missing entry from its source (or a source's from
    its target), so a deduplicated state dict loads strictly. Raises before anything is copied."""
    spec = get_spec(module)
    for t, src_key, tgt_key in [(t, prefix + s, prefix + k) for t in spec.ties for s, k in state_key_pairs(spec, t)]:
        logical_key = prefix + t.target
        src = state_dict.get(src_key)
        if src is None:
            # A deduplicated state dict may keep the target's entry instead (safetensors'
            # ``save_model`` keeps the alphabetically first name); it holds the source's data, in
            # the source's layout for a transposed tie (the parametrization's ``original``).
            if tgt_key in state_dict:
                state_dict[src_key] = state_dict[tgt_key]
            continue
        plain_source = t.source not in spec.parametrizations
        if plain_source and t.transform is not None and logical_key in state_dict and tgt_key not in state_dict:
            # A state dict from an untied model stores the target in its own layout.
            value = state_dict.pop(logical_key)
            read = t.make_transform()(src)
            if value.shape != read.shape or not torch.equal(value, read):
                state_dict[logical_key] = value
                raise TieError(
                    f"state_dict holds different values for {logical_key!r} and the {t.transform} of {src_key!r}, "
                    f"which the model ties; load with tying.load(model, path, strict=False) to keep the source's values, "
                    f"or tying.untie(model, {t.target!r}) first"
                )
        tgt = state_dict.get(tgt_key)
        if tgt is None:
            state_dict[tgt_key] = src
        elif tgt is not src and (tgt.shape != src.shape or not torch.equal(tgt, src)):
            raise TieError(
                f"state_dict holds different values for {tgt_key!r} and {src_key!r}, which the model ties; "
                f"loading would keep whichever is copied last. Load with tying.load(model, path, strict=False) "
                f"to keep the source's values, or tying.untie(model, {t.target!r}) first"
            )


def _load_state_dict_post_hook(module: nn.Module, incompatible_keys: object) -> None:
    # ``load_state_dict(assign=True)`` registers one new Parameter per key: re-tie.
    retie(module)
