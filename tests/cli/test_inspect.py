"""`tying inspect` on files from tying.save, safetensors' save_model, plain files and bad input."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file, save_model
from torch import nn
from typer.testing import CliRunner

import tying
from tying.cli.main import app

runner = CliRunner()


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.ModuleDict(
        {"emb": nn.Embedding(12, 4), "head": nn.Linear(4, 12), "enc": nn.Linear(6, 3), "dec": nn.Linear(3, 6)}
    )
    tying.tie(m, "emb.weight", "head.weight")
    tying.tie_transposed(m, "enc.weight", "dec.weight")
    return m


def test_inspect_shows_declared_groups_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tying.save(_model(), path)
    result = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "format: tying" in out
    assert "2 declared tie groups" in out
    assert "emb.weight" in out and "head.weight" in out and "transpose" in out
    header = int.from_bytes(path.read_bytes()[:8], "little")
    stored = (12 * 4 + 12 + 3 * 6 + 3 + 6) * 4
    assert f"file: {path.stat().st_size:,} bytes = 8 + header {header:,} + tensors {stored:,}" in out
    assert "5 stored tensors" in out


def test_inspect_reads_safetensors_save_model_aliases(tmp_path: Path) -> None:
    m = nn.ModuleDict({"emb": nn.Embedding(12, 4), "head": nn.Linear(4, 12)})
    m.head.weight = m.emb.weight
    save_model(m, str(tmp_path / "sm.safetensors"))
    out = runner.invoke(app, ["inspect", str(tmp_path / "sm.safetensors")], env={"COLUMNS": "200"}).output
    assert "safetensors save_model" in out
    assert "1 alias group: 1 state_dict entry stored once" in out  # singular counts


def test_inspect_plain_file(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2, 3), "b": torch.ones(3)}, str(tmp_path / "p.safetensors"))
    out = runner.invoke(app, ["inspect", str(tmp_path / "p.safetensors")], env={"COLUMNS": "200"}).output
    assert "plain safetensors" in out and "2 stored tensors" in out
    assert "every state_dict entry is stored separately" in out


def test_inspect_refuses_pickle_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, bad)
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 1
    assert "never unpickles" in result.output
    result = runner.invoke(app, ["inspect", str(tmp_path / "absent.safetensors")])
    assert result.exit_code == 1 and "no such checkpoint file" in result.output


def test_inspect_shows_a_weight_normalized_source(tmp_path) -> None:
    m = nn.Module()
    m.embed, m.head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    tying.tie(m, "embed.weight", "head.weight")
    tying.weight_norm(m, "embed.weight")
    path = tying.save(m, tmp_path / "wn.safetensors")
    result = CliRunner().invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "weight_norm(dim=0)" in result.output
