"""Hostile and broken checkpoints, and crashes while writing them.

Every file here — truncated, with a corrupted or lying header, wrong or unreadable dtypes, a tie
spec naming what is not there, conflicting tied copies, a pickle in disguise — must end in a
:class:`tying.CheckpointError` from ``tying.load``, ``tying.read_checkpoint`` and ``tying inspect``
(exit code 1), never another exception, a crash or a hang; nothing is unpickled; a refused load
leaves the model bit-identical with the same Parameter objects. Then ``kill -9`` in the middle of
``tying.save`` (the file at the path is always a complete checkpoint, old or new) and in the
middle of training (a resumed run reproduces the uninterrupted run's per-step losses exactly).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import safetensors.torch
import torch
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

import tying
from tying import CheckpointError
from tying.cli.inspect import inspect_file
from tying.cli.main import app

runner = CliRunner()
FUZZ = settings(
    max_examples=max(10, settings.default.max_examples // 5),
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # `snapshot` is a class; `folder` is per module
)


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """Turn a hang into a failure."""

    def fail(signum: int, frame: object) -> None:
        raise TimeoutError("a hostile checkpoint test hung")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(600)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Not ``tmp_path``: a parametrized test's folder name holds ``[...]``, which `tying inspect`
    # would print as rich markup.
    return tmp_path_factory.mktemp("hostile")


def _model(tied: bool = True) -> nn.Module:
    torch.manual_seed(0)
    m = nn.ModuleDict({"emb": nn.Embedding(12, 4), "head": nn.Linear(4, 12), "enc": nn.Linear(6, 3), "dec": nn.Linear(3, 6)})
    if tied:
        tying.tie(m, "emb.weight", "head.weight")
        tying.tie_transposed(m, "enc.weight", "dec.weight")
    return m


def _split(data: bytes) -> tuple[dict, bytes]:
    """A safetensors file's header (as JSON) and tensor bytes."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _pack(header: dict | bytes, payload: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(raw) if length is None else length).to_bytes(8, "little") + raw + payload


@pytest.fixture(scope="module")
def valid(folder: Path) -> bytes:
    """A tying checkpoint of the tied model: emb/head and enc/dec each stored once."""
    return tying.save(_model(), folder / "valid.safetensors").read_bytes()


def _plain(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file holding ``tensors``, as safetensors itself writes it."""
    return safetensors.torch.save(tensors, metadata)


def _state(**changes: torch.Tensor) -> dict[str, torch.Tensor]:
    """The tied model's values as a plain state dict, every path stored (``head.weight`` a copy
    of ``emb.weight``, ``dec.weight`` of ``enc.weight`` transposed), with ``changes``."""
    tied = _model()
    state = {k: getattr(tied[k.split(".")[0]], k.split(".")[1]).detach().clone().contiguous() for k in _model(tied=False).state_dict()}
    return {**state, **changes}


def _read_all(path: Path, snapshot) -> bool:
    """Run every reader on ``path``. Each must load it or raise CheckpointError, and a refused
    load must leave the model unchanged; `tying inspect` exits 0 or 1 with an error line.
    Returns whether the header was accepted."""
    for strict in (True, False):
        for tied in (True, False):
            model = _model(tied)
            snap = snapshot(model)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # strict=False warns about what it tolerates
                    tying.load(model, path, strict=strict)
            except CheckpointError as exc:
                assert str(path) in str(exc)
                snap.assert_unchanged(model)
    try:
        tying.read_checkpoint(path)
        readable = True
    except CheckpointError as exc:
        assert str(path) in str(exc)
        readable = False
    code, output = _inspect(path)
    assert code == (0 if readable else 1), output
    assert readable or output.startswith("error: ")
    return readable


def _inspect(path: Path) -> tuple[int, str]:
    """`tying inspect PATH` without typer's parsing (which costs a quarter second a call): the
    command function itself, its stdout and stderr captured. Returns (exit code, output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            inspect_file(path)
        except typer.Exit as exc:
            return exc.exit_code, out.getvalue()
    return 0, out.getvalue()


def _refused(path: Path, snapshot, match: str, *, header: bool = True) -> None:
    """``path`` is refused with ``match`` by load (strict) — and, for a bad ``header``, by
    read_checkpoint and `tying inspect` too."""
    model = _model()
    snap = snapshot(model)
    with pytest.raises(CheckpointError, match=match):
        tying.load(model, path)
    snap.assert_unchanged(model)
    assert _read_all(path, snapshot) is not header
    if header:
        with pytest.raises(CheckpointError, match=match):
            tying.read_checkpoint(path)


# --------------------------------------------------------------------------- deterministic cases

W = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
# tying's own words for what safetensors' parser rejects (its Rust messages follow and may change).
_INVALID = r"is not a valid safetensors file: \S"


def _entry(**fields: object) -> dict:
    return {"w": {**W, **fields}}


TRUNCATED: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("empty", lambda d: b"", r"not a safetensors file: 0 bytes, shorter than the 8-byte header length"),
    ("5-bytes", lambda d: d[:5], r"not a safetensors file: 5 bytes"),
    ("length-only", lambda d: d[:8], r"declares a [\d,]+-byte header but the file has 8 bytes"),
    ("header-cut", lambda d: d[:40], r"declares a [\d,]+-byte header but the file has 40 bytes"),
    ("data-cut", lambda d: d[:-1], _INVALID),
    ("extra-byte", lambda d: d + b"\0", _INVALID),
]

HEADERS: list[tuple[str, bytes, str]] = [
    ("not-json", _pack(b"this is not json"), _INVALID),
    ("array", _pack([]), _INVALID),
    ("string", _pack("w"), _INVALID),
    ("null", _pack(b"null"), _INVALID),
    ("deep", _pack(b"[" * 500 + b"]" * 500), _INVALID),
    ("trailing", _pack(json.dumps({"w": W}).encode() + b"}}", b"\0" * 8), _INVALID),
    ("nul-bytes", _pack(b"\0" * 16), _INVALID),
    ("entry-not-object", _pack({"w": 1}), _INVALID),
    ("dtype-int", _pack(_entry(dtype=4), b"\0" * 8), _INVALID),
    ("dtype-unknown", _pack(_entry(dtype="F99"), b"\0" * 8), _INVALID),
    ("shape-string", _pack(_entry(shape="2"), b"\0" * 8), _INVALID),
    ("shape-negative", _pack(_entry(shape=[-2]), b"\0" * 8), _INVALID),
    ("shape-overflow", _pack(_entry(shape=[2**62, 2**62]), b"\0" * 8), _INVALID),
    ("shape-not-usize", _pack(_entry(shape=[2**64]), b"\0" * 8), _INVALID),
    ("offsets-reversed", _pack(_entry(data_offsets=[8, 0]), b"\0" * 8), _INVALID),
    ("offsets-negative", _pack(_entry(data_offsets=[-8, 0]), b"\0" * 8), _INVALID),
    ("offsets-missing", _pack({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), _INVALID),
    ("offsets-overlap", _pack({"w": W, "v": W}, b"\0" * 8), _INVALID),
    ("offsets-gap", _pack(_entry(data_offsets=[8, 16]), b"\0" * 16), _INVALID),
    ("offsets-beyond-file", _pack(_entry(shape=[4], data_offsets=[0, 16]), b"\0" * 8), _INVALID),
    ("metadata-list", _pack({"__metadata__": [1], "w": W}, b"\0" * 8), _INVALID),
    ("metadata-int", _pack({"__metadata__": {"a": 1}, "w": W}, b"\0" * 8), _INVALID),
    ("length-max", _pack({"w": W}, b"\0" * 8, length=2**64 - 1), r"declares a 18,446,744,073,709,551,615-byte header"),
    ("length-zero", _pack({"w": W}, b"\0" * 8, length=0), _INVALID),
    ("length-short", _pack({"w": W}, b"\0" * 8, length=5), _INVALID),
    ("length-beyond-file", _pack({"w": W}, b"", length=10_000), r"declares a 10,000-byte header but the file has"),
]


@pytest.mark.parametrize(("cut", "match"), [c[1:] for c in TRUNCATED], ids=[c[0] for c in TRUNCATED])
def test_truncated_or_padded_file(folder, valid, snapshot, cut, match) -> None:
    path = folder / "truncated.safetensors"
    path.write_bytes(cut(valid))
    _refused(path, snapshot, r"truncated\.safetensors'.*" + match)


@pytest.mark.parametrize(("content", "match"), [c[1:] for c in HEADERS], ids=[c[0] for c in HEADERS])
def test_corrupted_header(folder, snapshot, content, match) -> None:
    path = folder / "header.safetensors"
    path.write_bytes(content)
    _refused(path, snapshot, r"header\.safetensors'.*" + match)


def _tying_meta(ties: object = (), aliases: object = None, version: object = 1, parametrizations: object = None) -> str:
    data = {"version": version, "ties": list(ties) if isinstance(ties, tuple) else ties, "aliases": aliases or {}}
    return json.dumps(data if parametrizations is None else {**data, "parametrizations": parametrizations})


def _tie(source: str, target: str, transform: str | None = None) -> dict:
    return {"source": source, "target": target, "transform": transform}


SPECS: list[tuple[str, str, str]] = [
    ("not-json", "{oops", r"malformed tying metadata: Expecting property name"),
    ("array", "[1, 2]", r"malformed tying metadata: expected a JSON object, got list"),
    ("version-3", _tying_meta(version=3), r"unsupported tie spec version 3 \(this tying reads versions 1, 2; upgrade tying\)"),
    ("parametrization-unknown", _tying_meta(version=2, parametrizations={"emb.weight": {"kind": "spectral"}}), r"unknown kind 'spectral'"),
    ("parametrization-untied", _tying_meta(version=2, parametrizations={"emb.weight": {"kind": "weight_norm", "dim": 0}}), r"no tie reads 'emb\.weight'"),
    ("version-missing", '{"ties": []}', r"unsupported tie spec version None"),
    ("ties-not-list", _tying_meta(ties={"a": 1}), r"tie spec has no 'ties' list"),
    ("tie-not-object", _tying_meta(ties=[3]), r"tie spec entry 0 is not an object"),
    ("tie-missing-target", _tying_meta(ties=[{"source": "emb.weight"}]), r"entry 0 needs string 'source' and 'target'"),
    ("transform-unknown", _tying_meta(ties=[_tie("emb.weight", "head.weight", "rotate")]), r"unknown transform 'rotate'"),
    (
        "chain",
        _tying_meta(ties=[_tie("emb.weight", "head.weight"), _tie("head.weight", "dec.weight")]),
        r"tie spec has a chain",
    ),
    ("self-tie", _tying_meta(ties=[_tie("emb.weight", "emb.weight")]), r"target 'emb\.weight' is tied twice or to itself"),
    ("aliases-list", _tying_meta(aliases=["a"]), r"'aliases' must map strings to strings"),
    ("alias-missing", _tying_meta(aliases={"x": "nope"}), r"alias 'x' refers to 'nope', which the file does not contain"),
    ("alias-stored", _tying_meta(aliases={"head.bias": "emb.weight"}), r"'head\.bias' is both stored and declared an alias"),
    ("deep-json", "[" * 100_000 + "]" * 100_000, r"malformed tying metadata: maximum recursion depth exceeded"),
    (
        "source-missing",
        _tying_meta(ties=[_tie("ghost.weight", "head.weight")]),
        r"the tie spec's source 'ghost\.weight' \(of 'ghost\.weight -> head\.weight'\) is not in the file",
    ),
]


@pytest.mark.parametrize(("meta", "match"), [c[1:] for c in SPECS], ids=[c[0] for c in SPECS])
def test_broken_tie_metadata(folder, snapshot, meta, match) -> None:
    path = folder / "spec.safetensors"
    path.write_bytes(_plain(_state(), {"tying": meta}))
    _refused(path, snapshot, r"spec\.safetensors'.*" + match)


def test_tie_spec_naming_paths_the_model_lacks(folder, snapshot) -> None:
    path = folder / "ghost.safetensors"
    ghost = {"ghost.weight": torch.zeros(12)}
    path.write_bytes(_plain(_state(**ghost), {"tying": _tying_meta(ties=[_tie("ghost.weight", "head.bias")])}))
    _refused(path, snapshot, r"cannot apply the file's tie 'ghost\.weight -> head\.bias': no parameter 'ghost\.weight'", header=False)
    path.write_bytes(_plain(_state(), {"tying": _tying_meta(ties=[_tie("emb.weight", "out.weight")])}))
    _refused(path, snapshot, r"no parameter 'out\.weight' in ModuleDict", header=False)
    path.write_bytes(_plain(_state(), {"tying": _tying_meta(ties=[_tie("head.bias", "enc.bias", "transpose")])}))
    _refused(path, snapshot, r"tie_transposed needs a source with at least 2 dimensions; 'head\.bias' has shape \[12\]", header=False)


def test_conflicting_tied_copies(folder, snapshot) -> None:
    path = folder / "conflict.safetensors"
    path.write_bytes(_plain(_state(**{"head.weight": torch.ones(12, 4)})))
    _refused(path, snapshot, r"the file's copies 'head\.weight' and 'emb\.weight' differ", header=False)
    # The file's own spec ties them, the model does not: the same refusal.
    path.write_bytes(
        _plain(_state(**{"head.weight": torch.ones(12, 4)}), {"tying": _tying_meta(ties=[_tie("emb.weight", "head.weight")])})
    )
    model = _model(tied=False)
    snap = snapshot(model)
    with pytest.raises(CheckpointError, match=r"the model ties 'emb\.weight -> head\.weight' but the file's copies .* differ"):
        tying.load(model, path)
    snap.assert_unchanged(model)


def test_transposed_copy_of_a_one_dimensional_source(folder, snapshot) -> None:
    """Regression: comparing the copies transposed a 1-D tensor (IndexError, even with strict=False)."""
    path = folder / "flat.safetensors"
    path.write_bytes(_plain(_state(**{"enc.weight": torch.zeros(18)})))
    _refused(path, snapshot, r"'enc\.weight': the file holds shape \[18\] \(as 'enc\.weight'\), the model \[3, 6\]", header=False)


def test_tied_copies_of_different_dtypes(folder, snapshot) -> None:
    """Regression: torch.equal(float8, float32) raised RuntimeError."""
    path = folder / "fp8.safetensors"
    path.write_bytes(_plain(_state(**{"head.weight": torch.zeros(12, 4, dtype=torch.float8_e4m3fn)})))
    _refused(path, snapshot, r"the file's copies 'head\.weight' and 'emb\.weight' differ", header=False)
    model = _model()
    with pytest.warns(UserWarning, match=r"copies 'head\.weight' and 'emb\.weight' differ \(the source's values are used\)"):
        tying.load(model, path, strict=False)
    assert torch.equal(model.head.weight, _model().emb.weight) and model.head.weight is model.emb.weight


def _declared_as(dtype: str, nbytes: int) -> bytes:
    """The tied model's values with ``head.bias`` (12 values) declared as ``dtype`` over ``nbytes`` bytes."""
    header, payload = _split(_plain(_state(**{"head.bias": torch.full((nbytes,), 60, dtype=torch.uint8)})))
    header["head.bias"].update(dtype=dtype, shape=[12])
    return _pack(header, payload)


@pytest.mark.parametrize(
    ("dtype", "size", "match"),
    [
        ("F16", 24, r"'head\.bias': the file holds F16 \(as 'head\.bias'\), the model torch\.float32"),
        ("BOOL", 12, r"'head\.bias': the file holds BOOL"),
        ("F4", 6, r"'head\.bias': the file holds F4 \(as 'head\.bias'\), which torch cannot read as \[12\]"),
        ("F6_E2M3", 9, r"'head\.bias': the file holds F6_E2M3 \(as 'head\.bias'\), which torch cannot read"),
    ],
)
def test_wrong_dtypes(folder, snapshot, dtype, size, match) -> None:
    path = folder / "dtype.safetensors"
    path.write_bytes(_declared_as(dtype, size))
    _refused(path, snapshot, match, header=False)
    model = _model()
    snap = snapshot(model)
    if dtype.startswith(("F4", "F6")):  # regression: not strict, this crashed half-way through the copy
        with pytest.raises(CheckpointError, match=match):
            tying.load(model, path, strict=False)
        snap.assert_unchanged(model)
    else:
        with pytest.warns(UserWarning, match=rf"the file holds {dtype}"):
            tying.load(model, path, strict=False)
        assert model.head.bias.dtype == torch.float32


def test_float8_model_round_trips_strictly(folder) -> None:
    """The dtype table knows float8 (a strict load used to refuse 'F8_E4M3' against float8_e4m3fn)."""
    m = _model().to(torch.float8_e4m3fn)
    path = tying.save(m, folder / "fp8-model.safetensors")
    fresh = _model(tied=False).to(torch.float8_e4m3fn)
    tying.load(fresh, path)
    assert fresh.head.weight is fresh.emb.weight
    assert torch.equal(fresh.emb.weight.view(torch.uint8), m.emb.weight.view(torch.uint8))
    assert {t.name: t.nbytes for t in tying.read_checkpoint(path).tensors}["emb.weight"] == 48


class _Marker:
    """Unpickling this creates ``path``: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("how", ["pickle-0", "pickle-2", "pickle-5", "torch.save", "torch.save-legacy"])
def test_pickle_renamed_is_never_unpickled(folder, snapshot, how) -> None:
    marker = folder / f"UNPICKLED-{how}"
    payload = {"emb.weight": torch.zeros(12, 4), "evil": _Marker(marker)}
    path = folder / "evil.safetensors"
    if how.startswith("pickle"):
        path.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=how == "torch.save")
    # Protocol 0 has no signature: it is refused as a malformed safetensors file.
    _refused(path, snapshot, r"never unpickles" if how != "pickle-0" else r"declares a [\d,]+-byte header")
    assert not marker.exists()
    # The payload was armed (BytesIO: torch.load reads a path named .safetensors as safetensors).
    if how.startswith("pickle"):
        pickle.loads(path.read_bytes())
    else:
        torch.load(io.BytesIO(path.read_bytes()), weights_only=False)
    assert marker.exists()


def test_the_typer_app_exits_1_with_the_error(folder, valid) -> None:
    """The checks above call the `inspect` command function; here the full app, argument parsing included."""
    marker = folder / "UNPICKLED-cli"
    evil, cut = folder / "evil-cli.safetensors", folder / "cut-cli.safetensors"
    torch.save({"evil": _Marker(marker)}, evil)
    cut.write_bytes(valid[:-3])
    cases = [(evil, "is a zip archive (a torch.save checkpoint, which holds pickle); tying never unpickles"), (cut, "not fully covered")]
    for path, message in cases:
        result = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "300"})
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        assert result.output.startswith(f"error: {str(path)!r}") and message in result.output
    assert not marker.exists()


def test_not_a_regular_file(folder, snapshot) -> None:
    fifo = folder / "fifo.safetensors"
    os.mkfifo(fifo)  # opening it to read would block forever
    loop = folder / "loop.safetensors"
    loop.symlink_to(loop)
    cases = [(fifo, r"fifo\.safetensors' is not a regular file"), (folder, r"is not a regular file"), (loop, r"no such checkpoint file")]
    for path, match in cases:
        _refused(path, snapshot, match)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(folder, valid, snapshot) -> None:
    path = folder / "secret.safetensors"
    path.write_bytes(valid)
    path.chmod(0)
    try:
        _refused(path, snapshot, r"cannot read '.*secret\.safetensors': Permission denied")
    finally:
        path.chmod(0o600)


def test_inspect_prints_hostile_names_verbatim(folder) -> None:
    path = folder / "markup.safetensors"
    path.write_bytes(_plain({"[/]": torch.zeros(2), "[bold]x": torch.zeros(1)}))
    result = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert result.exception is None, repr(result.exception)
    assert "[/]" in result.output and "[bold]x" in result.output


# --------------------------------------------------------------------------- fuzz


@FUZZ
@given(data=st.data())
def test_fuzz_truncation(folder, valid, snapshot, data) -> None:
    n = data.draw(st.integers(0, len(valid) - 1), label="length")
    path = folder / "fuzz-cut.safetensors"
    path.write_bytes(valid[:n])
    assert not _read_all(path, snapshot)


@FUZZ
@given(data=st.data())
def test_fuzz_byte_flips(folder, valid, snapshot, data) -> None:
    header_end = 8 + int.from_bytes(valid[:8], "little")
    at = st.integers(0, header_end - 1) if data.draw(st.booleans(), label="in header") else st.integers(0, len(valid) - 1)
    flips = data.draw(st.lists(st.tuples(at, st.integers(0, 255)), min_size=1, max_size=4), label="flips")
    mutated = bytearray(valid)
    for i, b in flips:
        mutated[i] = b
    path = folder / "fuzz-flip.safetensors"
    path.write_bytes(bytes(mutated))
    _read_all(path, snapshot)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
PATHS = st.sampled_from(
    ["emb.weight", "head.weight", "head.bias", "enc.weight", "dec.weight", "dec.bias", "ghost.weight"]
    + ["dec.parametrizations.weight.original"]
)


@FUZZ
@given(data=st.data())
def test_fuzz_header_fields(folder, valid, snapshot, data) -> None:
    header, payload = _split(valid)
    key = data.draw(st.sampled_from(sorted(header)), label="entry")
    if key == "__metadata__":
        header[key][data.draw(st.sampled_from(["tying", "format", "extra"]), label="metadata key")] = json.dumps(
            data.draw(JSON, label="metadata value")
        )
    else:
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "extra"]), label="field")
        header[key][field] = data.draw(
            JSON | st.sampled_from(["F16", "F4", "I8", "BOOL", "U64"]) | st.lists(st.integers(0, 200), max_size=3), label="value"
        )
    path = folder / "fuzz-field.safetensors"
    path.write_bytes(_pack(header, payload))
    _read_all(path, snapshot)


@FUZZ
@given(
    ties=st.lists(st.tuples(PATHS, PATHS, st.sampled_from([None, "transpose"])), max_size=3),
    aliases=st.dictionaries(PATHS, PATHS, max_size=2),
    stored=st.sets(PATHS, max_size=3),
)
def test_fuzz_tie_specs(folder, snapshot, ties, aliases, stored) -> None:
    """Well-formed but arbitrary tie specs and aliases over a file holding some tensors, ghosts
    included: loads that cannot be honoured are refused before anything changes."""
    shapes = {k: v.shape for k, v in _model(tied=False).state_dict().items()}
    tensors = _state()
    for name in stored:  # drop some, add a ghost or a parametrization key
        if name in tensors:
            del tensors[name]
        else:
            tensors[name] = torch.randn(shapes.get(name, (3, 6)))
    meta = _tying_meta(ties=[_tie(*t) for t in ties], aliases=aliases)
    path = folder / "fuzz-spec.safetensors"
    path.write_bytes(_plain(tensors, {"tying": meta}))
    _read_all(path, snapshot)


# --------------------------------------------------------------------------- kill -9 while saving

SAVER = r"""
import os, signal, sys, time
import torch
torch.set_num_threads(1)  # the server forks: no thread pool to inherit
import tying
from torch import nn

path, (V, D) = sys.argv[1], map(int, sys.argv[2:4])
folder, temporary = os.path.dirname(path), "." + os.path.basename(path) + "."
model = nn.ModuleDict({"embed": nn.Embedding(V, D), "head": nn.Linear(D, V)})
tying.tie(model, "embed.weight", "head.weight")
with torch.no_grad():
    model.embed.weight.copy_(torch.randn(V, D, generator=torch.Generator().manual_seed(0)))

def save(k, label):
    model.head.bias.data.fill_(k)  # the version, cheap to set: a save is mostly writing
    tying.save(model, path, metadata={"label": label})

save(0, "init")
print("ready", flush=True)
for line in sys.stdin:
    trial, fraction = line.split()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the saver: save versions 1, 2, 3, ... and report each completed save
        os.close(r)
        k = 0
        while True:
            k += 1
            save(k, f"{trial}.{k}")
            os.write(w, b".")
    os.close(w)
    # Kill at ``fraction`` of one save's duration after the second save: a random moment of the
    # third save (or later), however slow this machine is at the moment. A negative fraction:
    # as soon as the third save's temporary file appears, i.e. certainly in the middle of a write.
    os.read(r, 1)
    start = time.monotonic()
    os.read(r, 1)
    if float(fraction) >= 0:
        time.sleep(float(fraction) * (time.monotonic() - start))
    else:
        before = set(os.listdir(folder))
        while not (new := [n for n in set(os.listdir(folder)) - before if n.startswith(temporary)]):
            pass
        try:  # ... and has data in it
            while not os.listdir(os.path.join(folder, new[0])):
                pass
        except FileNotFoundError:  # that save completed first
            pass
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    done = b".."
    while chunk := os.read(r, 65536):
        done += chunk
    os.close(r)
    print(os.WTERMSIG(status), len(done), flush=True)
"""


# What a killed save leaves: its temporary folder (see tying._io.atomic_write).
_TEMPORARY = re.compile(r"\.ckpt\.safetensors\.tying-tmp-[0-9a-f]{8}")


def test_kill_9_during_save_leaves_a_complete_checkpoint(tmp_path) -> None:
    """SIGKILL a process in the middle of repeated tying.save calls to one path, eight times: the
    file there is always a complete checkpoint, the one before the save in flight or the one it
    wrote, and loads exactly. A kill during a write leaves its temporary folder behind,
    ``.ckpt.safetensors.tying-tmp-<8 hex>`` (partial data, up to a checkpoint's size; safetensors'
    own ``.tmp<random>`` file is inside it), and nothing else; the next save to the path (the next
    trial's, in another process) removes it."""
    V, D = 20_000, 64  # 5 MB
    path = tmp_path / "ckpt.safetensors"
    server = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(path), str(V), str(D)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    embed = torch.randn(V, D, generator=torch.Generator().manual_seed(0))
    rng = random.Random(0)
    interrupted_writes = 0
    try:
        assert server.stdout.readline() == "ready\n"
        for trial in range(8):
            mid_write = trial % 2 == 1  # every other kill is aimed at a write in progress
            server.stdin.write(f"{trial} {-1 if mid_write else rng.uniform(0.0, 1.5):.3f}\n")
            server.stdin.flush()
            sig, saves = map(int, server.stdout.readline().split())
            assert sig == signal.SIGKILL
            # ``saves`` saves completed; the one in flight may or may not have been renamed in.
            expected = {f"{trial}.{saves}", f"{trial}.{saves + 1}"}
            label = tying.read_checkpoint(path).metadata["label"]
            assert label in expected
            k = int(label.split(".")[1])
            model = nn.ModuleDict({"embed": nn.Embedding(V, D), "head": nn.Linear(D, V)})
            tying.load(model, path)
            assert model.head.weight is model.embed.weight
            assert torch.equal(model.embed.weight, embed) and torch.equal(model.head.bias, torch.full((V,), float(k)))
            # At most the killed save's folder: the previous trial's went with this trial's first save.
            leftovers = [p for p in tmp_path.iterdir() if p != path]
            assert len(leftovers) <= 1 and all(_TEMPORARY.fullmatch(p.name) and p.is_dir() for p in leftovers), leftovers
            interrupted_writes += mid_write and len(leftovers) == 1
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    assert interrupted_writes >= 1  # (a rename may just beat an aimed kill, but not four times)
    tying.save(model, path, metadata={"label": "final"})  # the next successful save cleans up
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    fresh = nn.ModuleDict({"embed": nn.Embedding(V, D), "head": nn.Linear(D, V)})
    tying.load(fresh, path)
    assert fresh.head.weight is fresh.embed.weight and torch.equal(fresh.embed.weight, embed)
    assert tying.read_checkpoint(path).metadata["label"] == "final"


def test_a_save_removes_only_the_stale_temporary_folders_of_its_own_path(tmp_path) -> None:
    """What a killed save left for this path goes; a live writer's folder, another path's, and
    anything merely named like ours (a file, a link, another suffix) stay."""
    path = tmp_path / "ckpt.safetensors"
    stale = tmp_path / ".ckpt.safetensors.tying-tmp-0123abcd"
    live = tmp_path / ".ckpt.safetensors.tying-tmp-89abcdef"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "ckpt.safetensors").write_bytes(b"partial")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_bytes(b"keep")
    kept = [
        tmp_path / ".ckpt.safetensors.tying-tmp-0123ABCD",  # not a name we make
        tmp_path / ".other.safetensors.tying-tmp-0123abcd",  # another path's
        tmp_path / ".tmpAbC123",  # safetensors' own temporary name
    ]
    for folder in kept:
        folder.mkdir()
    (tmp_path / ".ckpt.safetensors.tying-tmp-fedcba98").write_bytes(b"a file")
    (tmp_path / ".ckpt.safetensors.tying-tmp-76543210").symlink_to(elsewhere)
    kept += [tmp_path / ".ckpt.safetensors.tying-tmp-fedcba98", tmp_path / ".ckpt.safetensors.tying-tmp-76543210", elsewhere]

    lock = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a writer in another process holds it
        tying.save(_model(), path)
    finally:
        os.close(lock)
    assert not stale.exists() and live.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name, *(p.name for p in kept)])
    assert (elsewhere / "precious").read_bytes() == b"keep"
    tying.save(_model(), path)  # the writer is gone now
    assert not live.exists() and all(p.exists() for p in kept)


def test_import_and_save_work_without_fcntl(tmp_path) -> None:
    """Windows has no fcntl: `import tying` and `tying.save` must not need it (hidden here)."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import os, time, torch, tying\n"
        "from torch import nn\n"
        "folder = sys.argv[1]\n"
        "old = os.path.join(folder, '.m.safetensors.tying-tmp-0123abcd'); os.mkdir(old)\n"
        "os.utime(old, (time.time() - 2 * 86400,) * 2)\n"
        "young = os.path.join(folder, '.m.safetensors.tying-tmp-89abcdef'); os.mkdir(young)\n"
        "m = nn.Linear(3, 3)\n"
        "tying.load(nn.Linear(3, 3), tying.save(m, os.path.join(folder, 'm.safetensors')))\n"
        "print(sorted(os.listdir(folder)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # the day-old leftover is removed, the young one (maybe a live writer's) kept
    assert out.stdout.strip() == "['.m.safetensors.tying-tmp-89abcdef', 'm.safetensors']"
