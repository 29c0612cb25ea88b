"""save / load / read_checkpoint: ties re-established from the file, file size, every refusal
(leaving the model unchanged), foreign safetensors files, pickle never run, atomic writes."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file, save_model
from torch import nn

import tying
from tying import CheckpointError, Tie

# --------------------------------------------------------------------------- helpers


def _header(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return n, json.loads(raw[8 : 8 + n])


def _stored(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _unique_bytes(model: nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


# --------------------------------------------------------------------------- round trips


def test_save_load_into_fresh_untied_model_reestablishes_tie(models, tmp_path) -> None:
    m = models.tied_lm()
    path = tying.save(m, tmp_path / "lm.safetensors")
    fresh = models.TinyLM()
    assert fresh.head.weight is not fresh.embed.weight
    result = tying.load(fresh, path)
    assert result.applied_ties == [Tie("embed.weight", "head.weight")]
    assert result.missing_keys == [] and result.unexpected_keys == [] and result.warnings == []
    assert fresh.head.weight is fresh.embed.weight
    assert tying.get_spec(fresh).ties == [Tie("embed.weight", "head.weight")]
    for (k, a), (_, b) in zip(m.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    tying.verify(fresh)


def test_save_load_transposed_into_fresh_untied_model(models, tmp_path) -> None:
    m = models.tied_ae()
    path = tying.save(m, tmp_path / "ae.safetensors")
    fresh = models.AutoEncoder()
    result = tying.load(fresh, path)
    assert result.applied_ties == [Tie("enc.weight", "dec.weight", "transpose")]
    assert fresh.dec.parametrizations.weight.original is fresh.enc.weight
    assert torch.equal(fresh.enc.weight, m.enc.weight)
    assert torch.equal(fresh.dec.weight, m.enc.weight.T)
    assert torch.equal(fresh.dec.bias, m.dec.bias)
    tying.verify(fresh)


def test_save_load_three_way_and_modulelist(models, tmp_path) -> None:
    m = models.Seq2Seq()
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    fresh = models.Seq2Seq()
    tying.load(fresh, tying.save(m, tmp_path / "s2s.safetensors"))
    assert fresh.decoder.embed.weight is fresh.encoder.embed.weight is fresh.decoder.out.weight
    assert torch.equal(fresh.encoder.embed.weight, m.encoder.embed.weight)

    s = models.Stack(n=3)
    tying.tie(s, "layers.0.weight", "layers.2.weight")
    fresh_s = models.Stack(n=3)
    tying.load(fresh_s, tying.save(s, tmp_path / "stack.safetensors"))
    assert fresh_s.layers[2].weight is fresh_s.layers[0].weight
    assert fresh_s.layers[1].weight is not fresh_s.layers[0].weight
    assert torch.equal(fresh_s.layers[1].weight, s.layers[1].weight)


def test_load_into_model_already_tied(models, tmp_path) -> None:
    m = models.tied_lm()
    path = tying.save(m, tmp_path / "lm.safetensors")
    other = models.tied_lm()
    shared = other.embed.weight
    result = tying.load(other, path)
    assert result.applied_ties == []
    assert other.embed.weight is shared and other.head.weight is shared  # loaded in place
    assert torch.equal(shared, m.embed.weight)


def test_save_buffers_and_custom_metadata(tmp_path) -> None:
    m = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 3))
    tying.tie(m, "0.weight", "2.weight")
    m.train()(torch.randn(5, 3))  # running stats move
    path = tying.save(m, tmp_path / "bn.safetensors", metadata={"step": "7"})
    info = tying.read_checkpoint(path)
    assert info.metadata["step"] == "7"
    fresh = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 3))
    tying.load(fresh, path)
    assert fresh[2].weight is fresh[0].weight
    assert torch.equal(fresh[1].running_mean, m[1].running_mean)
    assert fresh[1].num_batches_tracked.item() == 1


@pytest.mark.parametrize("bad", [{"tying": "x"}, {"format": "np"}, {"k": 1}])
def test_save_refuses_reserved_or_non_string_metadata(models, tmp_path, bad) -> None:
    with pytest.raises(CheckpointError, match="reserved and values must be strings"):
        tying.save(models.TinyLM(), tmp_path / "x.safetensors", metadata=bad)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_broken_ties(models, tmp_path) -> None:
    m = models.tied_lm()
    m.head.weight = nn.Parameter(m.embed.weight.detach().clone())
    with pytest.raises(CheckpointError, match=r"declared ties are broken \(embed\.weight -> head\.weight: .*call tying\.retie"):
        tying.save(m, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_meta_tensors(models, tmp_path) -> None:
    with torch.device("meta"):
        m = models.tied_lm()
    with pytest.raises(CheckpointError, match=r"on the meta device.*tying\.materialize"):
        tying.save(m, tmp_path / "x.safetensors")


def test_save_writes_overlapping_views_as_copies(models, tmp_path) -> None:
    m = models.Stack(n=2)
    m.layers[1].weight = nn.Parameter(m.layers[0].weight.data[1:3])
    with pytest.warns(UserWarning, match=r"'layers\.1\.weight' shares memory with 'layers\.0\.weight'"):
        path = tying.save(m, tmp_path / "v.safetensors")
    stored = _stored(path)
    assert torch.equal(stored["layers.1.weight"], m.layers[0].weight[1:3])


# --------------------------------------------------------------------------- file layout


@pytest.mark.parametrize("kind", ["tied", "transposed", "untied", "three-way"])
def test_file_size_is_unique_bytes_plus_header(models, tmp_path, kind) -> None:
    if kind == "tied":
        m = models.tied_lm(vocab=50, dim=8)
        expect = {"embed.weight", "proj.weight", "proj.bias"}
    elif kind == "transposed":
        m = models.tied_ae(d=20, h=7)
        expect = {"enc.weight", "enc.bias", "dec.bias"}
    elif kind == "untied":
        m = models.TinyLM(vocab=50, dim=8)
        expect = {"embed.weight", "proj.weight", "proj.bias", "head.weight"}
    else:
        m = models.Seq2Seq(vocab=30, dim=8)
        tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
        expect = {"encoder.embed.weight"}
    path = tying.save(m, tmp_path / "m.safetensors")
    n, header = _header(path)
    assert path.stat().st_size == _unique_bytes(m) + 8 + n
    info = tying.read_checkpoint(path)
    assert info.header_size == n and info.file_size == path.stat().st_size
    assert set(header) - {"__metadata__"} == expect
    stored = _stored(path)
    assert set(stored) == expect
    state = m.state_dict()
    for k, v in stored.items():
        assert torch.equal(v, state[k]), k
    if kind == "transposed":
        assert stored["enc.weight"].shape == (7, 20)  # source layout, no transposed copy
        meta = json.loads(header["__metadata__"]["tying"])
        assert meta["aliases"] == {}  # implied by the tie: the header leaves it out ...
        assert meta["ties"] == [{"source": "enc.weight", "target": "dec.weight", "transform": "transpose"}]
        assert info.aliases == {"dec.parametrizations.weight.original": "enc.weight"}  # ... and the reader adds it back
    if kind == "untied":
        assert json.loads(header["__metadata__"]["tying"]) == {"version": 2, "ties": [], "parametrizations": {}, "aliases": {}}


def test_read_checkpoint_of_tying_file(models, tmp_path) -> None:
    m = models.tied_lm()
    path = tying.save(m, tmp_path / "lm.safetensors")
    info = tying.read_checkpoint(path)
    assert info.format == "tying"
    assert info.spec.ties == [Tie("embed.weight", "head.weight")]
    assert info.aliases == {"head.weight": "embed.weight"}
    assert info.groups() == [["embed.weight", "head.weight"]]
    by_name = {t.name: t for t in info.tensors}
    assert by_name["embed.weight"].shape == (11, 4) and by_name["embed.weight"].dtype == "F32"
    assert by_name["embed.weight"].nbytes == 11 * 4 * 4


def test_group_stored_under_declared_source_name(models, tmp_path) -> None:
    m = models.HeadFirstLM()  # head.weight comes first in state_dict
    tying.tie(m, "embed.weight", "head.weight")
    path = tying.save(m, tmp_path / "m.safetensors")
    assert set(_stored(path)) == {"embed.weight"}
    assert tying.read_checkpoint(path).aliases == {"head.weight": "embed.weight"}


# --------------------------------------------------------------------------- foreign files


def test_load_file_written_by_safetensors_save_model(models, tmp_path) -> None:
    src = models.TinyLM()
    src.head.weight = src.embed.weight  # hand-tied, as transformers does
    path = tmp_path / "sm.safetensors"
    save_model(src, str(path))
    info = tying.read_checkpoint(path)
    assert info.format == "safetensors-save_model"
    assert info.spec is None
    assert len(info.aliases) == 1
    # Into a model that declares the tie: strict load works although a key was dropped.
    m = models.tied_lm()
    result = tying.load(m, path)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert m.head.weight is m.embed.weight and torch.equal(m.embed.weight, src.embed.weight)
    # Into a plain untied model: the file stores the two entries as one tensor, so the model gets
    # one tensor back (it used to get two equal copies that drift apart in training).
    plain = models.TinyLM()
    result = tying.load(plain, path)
    assert torch.equal(plain.head.weight, src.embed.weight) and torch.equal(plain.embed.weight, src.embed.weight)
    assert plain.head.weight is plain.embed.weight
    assert [t.describe() for t in result.applied_ties] == ["embed.weight -> head.weight"]
    assert [t.describe() for t in tying.get_spec(plain).ties] == ["embed.weight -> head.weight"]
    tying.verify(plain)


def test_load_save_model_file_of_transposed_tie(models, tmp_path) -> None:
    src = models.tied_ae()
    path = tmp_path / "ae.safetensors"
    save_model(src, str(path))  # keeps 'dec.parametrizations.weight.original', drops 'enc.weight'
    info = tying.read_checkpoint(path)
    assert info.aliases == {"enc.weight": "dec.parametrizations.weight.original"}
    m = models.tied_ae()
    tying.load(m, path)
    assert torch.equal(m.enc.weight, src.enc.weight) and torch.equal(m.dec.bias, src.dec.bias)
    assert m.dec.parametrizations.weight.original is m.enc.weight


def test_load_plain_save_file_state_dict(models, tmp_path) -> None:
    src = models.TinyLM()
    with torch.no_grad():
        src.head.weight.copy_(src.embed.weight)
    path = tmp_path / "plain.safetensors"
    save_file({k: v.clone() for k, v in src.state_dict().items()}, str(path))
    info = tying.read_checkpoint(path)
    assert info.format == "plain" and info.aliases == {} and info.spec is None
    m = models.tied_lm()
    result = tying.load(m, path)
    assert result.applied_ties == [] and result.warnings == []
    assert m.head.weight is m.embed.weight and torch.equal(m.embed.weight, src.embed.weight)


def test_load_plain_file_into_transposed_model(models, tmp_path) -> None:
    src = models.AutoEncoder()
    with torch.no_grad():
        src.dec.weight.copy_(src.enc.weight.T)
    path = tmp_path / "plain.safetensors"
    save_file(dict(src.state_dict()), str(path))
    m = models.tied_ae()
    tying.load(m, path)
    assert torch.equal(m.enc.weight, src.enc.weight)
    assert m.dec.parametrizations.weight.original is m.enc.weight


# --------------------------------------------------------------------------- refusals


def _refused(model, path, snapshot, match, **kw):
    snap = snapshot(model)
    with pytest.raises(CheckpointError, match=match):
        tying.load(model, path, **kw)
    snap.assert_unchanged(model)


def test_load_refuses_wrong_shape(models, tmp_path, snapshot) -> None:
    path = tying.save(models.tied_lm(vocab=12), tmp_path / "v12.safetensors")
    _refused(
        models.tied_lm(vocab=11),
        path,
        snapshot,
        r"nothing was changed:\n  - 'embed\.weight': the file holds shape \[12, 4\] \(as 'embed\.weight'\), the model \[11, 4\]",
    )
    # Shape mismatches fail even with strict=False.
    _refused(models.tied_lm(vocab=11), path, snapshot, r"shape \[12, 4\]", strict=False)


def test_load_refuses_wrong_dtype_unless_not_strict(models, tmp_path, snapshot) -> None:
    src = models.tied_lm().double()
    path = tying.save(src, tmp_path / "f64.safetensors")
    m = models.tied_lm()
    _refused(m, path, snapshot, r"'embed\.weight': the file holds F64 \(as 'embed\.weight'\), the model torch\.float32")
    with pytest.warns(UserWarning, match="F64"):
        result = tying.load(m, path, strict=False)
    assert m.embed.weight.dtype == torch.float32
    assert torch.equal(m.embed.weight, src.embed.weight.float())
    assert m.head.weight is m.embed.weight
    assert len(result.warnings) == 3


def test_load_refuses_missing_key(models, tmp_path, snapshot) -> None:
    src = models.TinyLM()
    sd = {k: v for k, v in src.state_dict().items() if k != "proj.bias"}
    path = tmp_path / "missing.safetensors"
    save_file(sd, str(path))
    m = models.TinyLM()
    _refused(m, path, snapshot, r"missing key 'proj\.bias'")
    keep = m.proj.bias.detach().clone()
    with pytest.warns(UserWarning, match="missing key"):
        result = tying.load(m, path, strict=False)
    assert result.missing_keys == ["proj.bias"]
    assert torch.equal(m.proj.bias, keep)
    assert torch.equal(m.proj.weight, src.proj.weight)


def test_load_refuses_unexpected_key(models, tmp_path, snapshot) -> None:
    sd = dict(models.TinyLM().state_dict())
    sd["extra.weight"] = torch.zeros(2)
    path = tmp_path / "extra.safetensors"
    save_file(sd, str(path))
    m = models.TinyLM()
    _refused(m, path, snapshot, r"unexpected keys \(the model has no place for them\): \['extra\.weight'\]")
    with pytest.warns(UserWarning, match="unexpected"):
        result = tying.load(m, path, strict=False)
    assert result.unexpected_keys == ["extra.weight"]
    assert torch.equal(m.embed.weight, sd["embed.weight"])


def test_load_refuses_disagreeing_copies_of_declared_tie(models, tmp_path, snapshot) -> None:
    src = models.TinyLM()  # untied: head.weight differs from embed.weight
    path = tmp_path / "plain.safetensors"
    save_file(dict(src.state_dict()), str(path))
    m = models.tied_lm()
    _refused(
        m,
        path,
        snapshot,
        r"the model ties 'embed\.weight -> head\.weight' but the file's copies 'head\.weight' and 'embed\.weight' differ",
    )
    with pytest.warns(UserWarning, match="differ"):
        result = tying.load(m, path, strict=False)
    assert len(result.warnings) == 1
    assert m.head.weight is m.embed.weight
    assert torch.equal(m.embed.weight, src.embed.weight)  # the source's values win
    assert not torch.equal(m.head.weight, src.head.weight)


def test_load_refuses_disagreeing_transposed_copies(models, tmp_path, snapshot) -> None:
    path = tmp_path / "plain.safetensors"
    src = models.AutoEncoder()
    save_file(dict(src.state_dict()), str(path))
    m = models.tied_ae()
    _refused(m, path, snapshot, r"the model ties 'enc\.weight -\[transpose\]-> dec\.weight' but the file's copies")
    with pytest.warns(UserWarning):
        tying.load(m, path, strict=False)
    assert torch.equal(m.enc.weight, src.enc.weight)
    assert m.dec.parametrizations.weight.original is m.enc.weight


def test_load_refuses_file_tie_contradicting_model(models, tmp_path, snapshot) -> None:
    src = models.Stack(n=3)
    tying.tie(src, "layers.1.weight", "layers.2.weight")
    path = tying.save(src, tmp_path / "s.safetensors")
    m = models.Stack(n=3)
    tying.tie(m, "layers.0.weight", "layers.2.weight")
    _refused(
        m,
        path,
        snapshot,
        r"the file ties 'layers\.1\.weight -> layers\.2\.weight' but the model declares layers\.0\.weight -> layers\.2\.weight",
    )
    with pytest.warns(UserWarning) as caught:
        result = tying.load(m, path, strict=False)
    assert any("the file ties" in str(w.message) for w in caught)
    # The file stores layers.2.weight as an alias of layers.1.weight, which differs from the
    # model's source layers.0.weight: also tolerated, the source's values are kept.
    assert len(result.warnings) == 2
    assert result.applied_ties == []
    assert tying.get_spec(m).ties == [Tie("layers.0.weight", "layers.2.weight")]
    assert m.layers[2].weight is m.layers[0].weight
    assert torch.equal(m.layers[0].weight, src.layers[0].weight)


def test_load_refuses_file_tie_the_model_cannot_hold(models, tmp_path, snapshot) -> None:
    src = models.Stack(n=2, dim=4)
    tying.tie(src, "layers.0.weight", "layers.1.weight")
    path = tying.save(src, tmp_path / "s.safetensors")
    # Same keys and shapes, but the model's layers.1.weight is float64: the tie cannot be made.
    m = models.Stack(n=2, dim=4)
    m.layers[1].double()
    _refused(m, path, snapshot, r"cannot apply the file's tie 'layers\.0\.weight -> layers\.1\.weight': .*dtypes differ")


def test_load_refuses_file_tie_onto_foreign_parametrization_before_changing_anything(tmp_path, snapshot) -> None:
    """Regression: with strict=False the first file tie used to be applied before the second
    failed (a TieError from tie(), after the checks), leaving the model half-changed."""
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    src = nn.Sequential(*(nn.Linear(3, 3) for _ in range(4)))
    tying.tie(src, "0.weight", "1.weight")
    tying.tie(src, "2.weight", "3.weight")
    path = tying.save(src, tmp_path / "s.safetensors")
    m = nn.Sequential(*(nn.Linear(3, 3) for _ in range(4)))
    parametrize.register_parametrization(m[3], "weight", Double())
    for strict in (True, False):
        _refused(
            m,
            path,
            snapshot,
            r"cannot apply the file's tie '2\.weight -> 3\.weight': target '3\.weight' is computed by a parametrization",
            strict=strict,
        )
    assert m[1].weight is not m[0].weight


def test_load_refuses_meta_model(models, tmp_path, snapshot) -> None:
    path = tying.save(models.tied_lm(), tmp_path / "lm.safetensors")
    with torch.device("meta"):
        m = models.tied_lm()
    with pytest.raises(CheckpointError, match=r"meta tensors .*tying\.materialize"):
        tying.load(m, path)


class _Marker:
    """Unpickling this creates ``path`` (open(path, "w")): proof that something unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("how", ["torch.save", "torch.save-legacy", "pickle"])
def test_load_never_unpickles(models, tmp_path, snapshot, how) -> None:
    marker = tmp_path / "UNPICKLED"
    payload = {"embed.weight": torch.zeros(11, 4), "evil": _Marker(marker)}
    path = tmp_path / "model.safetensors"
    if how == "torch.save":
        torch.save(payload, path)
    elif how == "torch.save-legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    # The payload really is armed: unpickling it would create the marker.
    with open(path, "rb") as f:
        head = f.read(4)
    assert head.startswith(b"PK") or head.startswith(b"\x80")
    m = models.tied_lm()
    _refused(m, path, snapshot, r"never unpickles")
    with pytest.raises(CheckpointError, match="never unpickles"):
        tying.read_checkpoint(path)
    assert not marker.exists()


def test_marker_payload_is_armed(tmp_path) -> None:
    """Guard for the test above: the crafted pickle does create its marker when unpickled."""
    marker = tmp_path / "UNPICKLED"
    pickle.loads(pickle.dumps(_Marker(marker), protocol=2)).close()
    assert marker.exists()


def test_header_length_that_looks_like_a_pickle_signature_loads(models, tmp_path) -> None:
    """Regression: a header of 128 + 256k bytes starts the file with byte 0x80 (a pickle's first
    byte); safetensors pads headers to 8 bytes, so one file in 32 has such a length."""
    m = models.tied_lm()
    path = tmp_path / "lm.safetensors"
    for k in range(256):
        tying.save(m, path, metadata={"pad": "x" * k})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length of 128 + 256k bytes")
    assert tying.read_checkpoint(path).metadata["pad"] == "x" * k
    fresh = models.TinyLM()
    tying.load(fresh, path)
    assert fresh.head.weight is fresh.embed.weight and torch.equal(fresh.embed.weight, m.embed.weight)


def test_load_refuses_truncated_file(models, tmp_path, snapshot) -> None:
    path = tying.save(models.tied_lm(vocab=40, dim=8), tmp_path / "lm.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    m = models.tied_lm(vocab=40, dim=8)
    _refused(m, path, snapshot, r"lm\.safetensors' is not a valid safetensors file")
    path.write_bytes(data[:5])
    _refused(m, path, snapshot, r"not a safetensors file: 5 bytes, shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    path.write_bytes(data[: 8 + n // 2])  # header cut in the middle
    _refused(m, path, snapshot, r"declares a [\d,]+-byte header but the file has [\d,]+ bytes")


@pytest.mark.parametrize(
    "content",
    [
        (12).to_bytes(8, "little") + b"not json at all, sorry",
        (10).to_bytes(8, "little") + b'{"a": 1}  ' + b"\0" * 16,
        (2**40).to_bytes(8, "little") + b"{}",
        (40).to_bytes(8, "little") + b'{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 99]}}',
    ],
    ids=["garbage", "bad-entry", "huge-length", "offsets-past-end"],
)
def test_load_refuses_garbage_header(models, tmp_path, snapshot, content) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    _refused(models.TinyLM(), path, snapshot, r"bad\.safetensors'")
    with pytest.raises(CheckpointError):
        tying.read_checkpoint(path)


def test_load_refuses_malformed_tying_metadata(models, tmp_path, snapshot) -> None:
    sd = dict(models.TinyLM().state_dict())
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path), metadata={"tying": '{"version": 99, "ties": []}'})
    _refused(models.TinyLM(), path, snapshot, r"malformed tying metadata: unsupported tie spec version 99")
    save_file(sd, str(path), metadata={"tying": '{"version": 1, "ties": [], "aliases": {"x": "nope"}}'})
    _refused(models.TinyLM(), path, snapshot, r"alias 'x' refers to 'nope', which the file does not contain")


def test_load_missing_file(models, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        tying.load(models.TinyLM(), tmp_path / "absent.safetensors")


# --------------------------------------------------------------------------- atomic write


def test_failed_write_leaves_previous_file_and_no_temp_file(models, tmp_path, monkeypatch) -> None:
    import tying._io

    path = tying.save(models.tied_lm(), tmp_path / "lm.safetensors")
    before = path.read_bytes()
    real_save_file = tying._io.save_file
    calls = []

    def crash_midway(tensors, filename, metadata=None):
        calls.append(filename)
        real_save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # a partial file on disk ...
            f.truncate(os.path.getsize(filename) // 2)
        raise OSError("disk full")  # ... and then the writer dies

    monkeypatch.setattr(tying._io, "save_file", crash_midway)
    other = models.tied_lm(vocab=30)
    with pytest.raises(OSError, match="disk full"):
        tying.save(other, path)
    assert len(calls) == 1 and Path(calls[0]).parent.parent == tmp_path  # in a temporary folder beside the target
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lm.safetensors"]
    monkeypatch.undo()
    fresh = models.TinyLM()
    tying.load(fresh, path)  # still the first model's complete file
    assert fresh.head.weight is fresh.embed.weight


def test_save_into_missing_folder(models, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tying.save(models.TinyLM(), tmp_path / "nope" / "x.safetensors")


def test_save_to_a_folder_names_the_folder(models, tmp_path) -> None:
    """It used to raise a raw IsADirectoryError about a temporary name."""
    with pytest.raises(IsADirectoryError, match=rf"cannot write '{tmp_path}': it is a folder; name a file in it"):
        tying.save(models.TinyLM(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_shape_mismatch_is_not_also_unexpected_and_suggests_resize_vocab(models, tmp_path, snapshot) -> None:
    path = tying.save(models.tied_lm(vocab=12), tmp_path / "v12.safetensors")
    model = models.tied_lm(vocab=11)
    snap = snapshot(model)
    with pytest.raises(CheckpointError) as caught:
        tying.load(model, path)
    message = str(caught.value)
    assert "'embed.weight': the file holds shape [12, 4]" in message
    assert "unexpected" not in message  # it used to list the same key as unexpected too
    assert "call tying.resize_vocab(model, 12) before loading" in message
    snap.assert_unchanged(model)
    tying.resize_vocab(model, 12)
    tying.load(model, path)


class _NanoGPT(nn.Module):
    """nanoGPT's tie, as written: by assignment, never declared."""

    def __init__(self, tie: bool) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.h = nn.Linear(4, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        if tie:
            self.wte.weight = self.lm_head.weight


def test_undeclared_tie_in_the_file_is_reapplied_on_load(tmp_path) -> None:
    """A file that stores two entries as one tensor gives one tensor back; the model used to load
    two equal copies that drift apart in training, and verify passed."""
    src = _NanoGPT(tie=True)
    path = tying.save(src, tmp_path / "nano.safetensors")
    assert tying.read_checkpoint(path).aliases == {"wte.weight": "lm_head.weight"} or tying.read_checkpoint(path).aliases == {
        "lm_head.weight": "wte.weight"
    }
    fresh = _NanoGPT(tie=False)
    result = tying.load(fresh, path)
    assert fresh.wte.weight is fresh.lm_head.weight
    assert torch.equal(fresh.wte.weight, src.wte.weight)
    assert len(result.applied_ties) == 1 and tying.verify(fresh).ok


def test_file_alias_the_model_cannot_hold_is_refused(tmp_path, snapshot) -> None:
    src = _NanoGPT(tie=True)
    path = tying.save(src, tmp_path / "nano.safetensors")

    class Other(_NanoGPT):
        def __init__(self) -> None:
            super().__init__(tie=False)
            self.wte.weight = nn.Parameter(self.wte.weight.detach().double())  # cannot share with a float32 head

    model = Other()
    snap = snapshot(model)
    with pytest.raises(CheckpointError, match=r"the file stores '(wte|lm_head)\.weight' and '(wte|lm_head)\.weight' as one tensor but the model cannot hold that tie"):
        tying.load(model, path)
    snap.assert_unchanged(model)


def test_undeclared_sharing_with_disagreeing_stored_copies_is_refused(tmp_path, snapshot) -> None:
    """The model shares one Parameter under two paths (undeclared); a file storing two different
    copies for them used to load last-write-wins without a word."""
    plain = _NanoGPT(tie=False)
    path = tying.save(plain, tmp_path / "untied.safetensors")  # two different matrices
    shared = _NanoGPT(tie=True)
    snap = snapshot(shared)
    with pytest.raises(CheckpointError, match=r"are one tensor in the model but the file's copies .* differ"):
        tying.load(shared, path)
    snap.assert_unchanged(shared)
    with pytest.warns(UserWarning, match="differ"):
        result = tying.load(shared, path, strict=False)
    assert shared.wte.weight is shared.lm_head.weight and len(result.warnings) == 1
    # Equal stored copies load fine.
    plain.lm_head.weight = nn.Parameter(plain.wte.weight.detach().clone())
    tying.load(_NanoGPT(tie=True), tying.save(plain, tmp_path / "equal.safetensors"))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_torch_save(models, tmp_path, umask, mode) -> None:
    """Checkpoints used to be 0600 whatever the umask (safetensors renames its private temporary
    file into place), so a shared results folder held files nobody else could read. Every
    crash-safe writer (model and training-state checkpoints, metrics and reports) goes through
    tying._io.atomic_write; a second write over the file gets the mode too."""
    from tying._io import atomic_write_text
    from tying.training.state import TrainState, save_train_state

    model = models.tied_lm()
    previous = os.umask(umask)
    try:
        torch.save(model.state_dict(), tmp_path / "torch.pt")
        written = [tying.save(model, tmp_path / "lm.safetensors"), tying.save(model, tmp_path / "lm.safetensors")]
        written.append(save_train_state(tmp_path / "state.safetensors", TrainState(), torch.optim.SGD(model.parameters(), lr=0.1).state_dict(), {}))
        written.append(atomic_write_text(tmp_path / "metrics.json", "{}\n"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "torch.pt").st_mode) == mode
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: oct(mode) for p in written}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.safetensors", "metrics.json", "state.safetensors", "torch.pt"]
