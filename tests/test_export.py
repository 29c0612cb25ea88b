"""Exported tied models: the spec travels with torch.export programs and ONNX files, the tied
matrix is one ONNX initializer, exported and ONNX runs equal eager, `tying inspect model.onnx`."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import tying
import tying.export as te
from tying.cli.main import app

warnings.filterwarnings("ignore", message=".*torchvision.*")


class LM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 30)
        tying.tie(self, "emb.weight", "head.weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.emb(x))))


class AE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 4)
        self.dec = nn.Linear(4, 6)
        tying.tie_transposed(self, "enc.weight", "dec.weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(x)))


def case(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return (LM(), (torch.tensor([[1, 2, 3, 29]]),)) if name == "lm" else (AE(), (torch.randn(2, 6),))


def test_a_transposed_tie_in_an_exported_module_does_not_crash() -> None:
    """*Why*, export: find_ties / verify crashed with TypeError ('Module' object is not subscriptable)."""
    model, args = case("ae")
    exported = torch.export.export(model, args).module()
    assert [g.paths for g in tying.find_ties(exported)] == [["enc.weight", "dec.parametrizations.weight.original"]]
    assert tying.verify(exported, raise_error=False).undeclared == [["enc.weight", "dec.parametrizations.weight.original"]]


@pytest.mark.parametrize("name", ["lm", "ae"])
def test_the_exported_program_carries_the_spec_and_equals_eager(name: str, tmp_path) -> None:
    """*Why*, export: torch.export kept one storage for the tie but lost the spec."""
    model, args = case(name)
    ep = te.export(model, args)
    assert te.spec_of(ep) == tying.get_spec(model)
    te.save(ep, tmp_path / "m.pt2")
    back = te.load(tmp_path / "m.pt2")
    assert te.spec_of(back) == tying.get_spec(model)
    exported = te.module(back)
    assert tying.verify(exported).ok
    assert torch.equal(exported(*args), model(*args))


@pytest.mark.parametrize("name", ["lm", "ae"])
def test_onnx_stores_the_tied_matrix_once_and_equals_eager(name: str, tmp_path) -> None:
    """*Why*, export: the dynamo exporter wrote the tied matrix twice (a constant-folded transpose)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install tying[export])")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install tying[export])")
    model, args = case(name)
    with contextlib.redirect_stdout(io.StringIO()):
        plain = torch.onnx.export(model, args, dynamo=True).model_proto
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    assert [d.how for d in te.onnx_duplicates(tmp_path / "plain.onnx")] == ["transpose"]
    removed = te.to_onnx(model, args, tmp_path / "tied.onnx")
    assert [d.how for d in removed] == ["transpose"]
    assert te.onnx_duplicates(tmp_path / "tied.onnx") == []
    assert te.onnx_spec(tmp_path / "tied.onnx") == tying.get_spec(model)
    weights = [i for i in onnx.load(str(tmp_path / "tied.onnx")).graph.initializer if len(i.dims) == 2]
    tied = model.emb.weight if name == "lm" else model.enc.weight
    assert sum(tuple(i.dims) in (tuple(tied.shape), tuple(tied.shape)[::-1]) for i in weights) == 1
    session = ort.InferenceSession(str(tmp_path / "tied.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: args[0].numpy()})[0]
    np.testing.assert_allclose(got, model(*args).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_inspect_reports_a_duplicated_initializer_of_the_legacy_exporter(tmp_path) -> None:
    """*Why*, export: `tying inspect` could not read an .onnx file (the legacy exporter writes a second copy)."""
    pytest.importorskip("onnx", reason="onnx is not installed (pip install tying[export])")
    model, args = case("lm")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(tmp_path / "legacy.onnx"), dynamo=False)
    duplicates = te.onnx_duplicates(tmp_path / "legacy.onnx")
    assert len(duplicates) == 1 and duplicates[0].nbytes == 30 * 8 * 4
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "legacy.onnx")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "tie spec (metadata_props 'tying'): none",
        "1 duplicated initializer (960 B stored twice):",
        f"  {duplicates[0].name} is the transpose of emb.weight (960 bytes stored twice)",
    ]
    te.to_onnx(model, args, tmp_path / "tied.onnx")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "tied.onnx")])
    assert "no initializer is stored twice" in result.output and "emb.weight -> head.weight" in result.output


def test_inspect_refuses_a_file_that_is_not_onnx(tmp_path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all \xff\xfe")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "bad.onnx")])
    assert result.exit_code == 1 and "is not a readable ONNX model" in result.output
