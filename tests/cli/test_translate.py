"""`tying translate` as a user runs it: stdin to stdout, files, empty lines kept, long lines
truncated with a warning naming the line, --eval scores with sacrebleu's signature, and every bad
input (not a translation model, no tokenizer, unreadable files, bad options) one line, exit 1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import tying
from tying.cli.main import app
from tying.tasks.translation import builtin_bitext
from tying.models import TranslationConfig, TranslationTransformer
from tying.recipes import read_metrics
from tying.tasks.translation.checkpoint import CONFIG_KEY

runner = CliRunner()
LINES = ["A man holds a ball in the park.", "", "Two men find a red ball.", "   "]


def _run(*args: str, input: str | None = None):  # noqa: ANN202
    result = runner.invoke(app, ["translate", *args], input=input)
    assert "Traceback" not in result.output, result.output
    return result


def test_stdin_to_stdout_keeps_empty_lines(translation_run: Path) -> None:
    result = _run(str(translation_run), input="\n".join(LINES) + "\n")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert len(out) == 4 and out[1] == "" and out[3] == ""
    assert out[0] == "Ein Mann hält einen Ball im Park."


def test_input_and_output_files_give_the_same_translations(translation_run: Path, tmp_path: Path) -> None:
    (tmp_path / "in.en").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    result = _run(str(translation_run / "best.safetensors"), "--input", str(tmp_path / "in.en"), "--output", str(tmp_path / "out.de"), "--beam", "1")
    assert result.exit_code == 0 and result.stdout == ""
    piped = _run(str(translation_run), "--beam", "1", input="\n".join(LINES) + "\n")
    assert (tmp_path / "out.de").read_text(encoding="utf-8") == piped.stdout


def test_eval_prints_bleu_and_chrf_with_signatures(translation_run: Path, tmp_path: Path) -> None:
    bitext = builtin_bitext()
    (tmp_path / "test.en").write_text("\n".join(bitext.source("test")) + "\n", encoding="utf-8")
    (tmp_path / "test.de").write_text("\n".join(bitext.target("test")) + "\n", encoding="utf-8")
    result = _run(str(translation_run), "--eval", "--src", str(tmp_path / "test.en"), "--ref", str(tmp_path / "test.de"), "--beam", "2")
    assert result.exit_code == 0, result.output
    record = read_metrics(translation_run)
    assert record is not None
    bleu, chrf = result.stdout.splitlines()
    assert bleu == f"BLEU {record['test']['bleu']:.2f}  ({record['data']['sacrebleu']['bleu']})"  # what training reported
    assert chrf == f"chrF {record['test']['chrf']:.2f}  ({record['data']['sacrebleu']['chrf']})"


def test_an_over_long_line_is_truncated_with_a_warning_naming_it(translation_run: Path) -> None:
    result = _run(str(translation_run), "--beam", "1", input="A man holds a ball.\n" + "a red ball " * 60 + "\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr.startswith("warning: line 2: ") and "max_positions=64); translating its first 63" in result.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("linear", r"is not a translation model checkpoint: its header has no 'tying.translation' entry"),
        ("no_tokenizer", r"holds a translation model but not its tokenizer"),
        ("text", r"is not a valid safetensors file"),
        ("missing", r"no such checkpoint file or run folder"),
        ("empty_folder", r"holds no checkpoint \(best.safetensors or model-epoch\*.safetensors\)"),
    ],
)
def test_a_checkpoint_that_cannot_translate_is_named(make: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    if make == "linear":
        tying.save(torch.nn.Linear(2, 2), path)
    elif make == "no_tokenizer":
        config = TranslationConfig(16, 16, embedding_size=8, num_heads=2, encoder_layers=1, decoder_layers=1, ffn_size=8)
        tying.save(TranslationTransformer(config), path, metadata={CONFIG_KEY: json.dumps(config.__dict__)})
    elif make == "text":
        path.write_text("these are notes, not a checkpoint")
    elif make == "empty_folder":
        path.mkdir()
    result = _run(str(path), input="A man.\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr.replace("\n", " ")), result.stderr


def test_unreadable_inputs_and_bad_options_are_one_line_errors(translation_run: Path, tmp_path: Path) -> None:
    (tmp_path / "latin1.en").write_bytes("Ein Mädchen\n".encode("latin-1"))
    (tmp_path / "two.en").write_text("a\nb\n")
    (tmp_path / "one.de").write_text("a\n")
    run = str(translation_run)
    cases = [
        ((run, "--input", str(tmp_path / "nope.en")), "cannot read input file"),
        ((run, "--input", str(tmp_path / "latin1.en")), "is not UTF-8 text"),
        ((run, "--eval", "--src", str(tmp_path / "two.en")), "--eval needs --src FILE and --ref FILE"),
        ((run, "--src", str(tmp_path / "two.en")), "--src and --ref go with --eval"),
        ((run, "--eval", "--src", str(tmp_path / "two.en"), "--ref", str(tmp_path / "one.de")), "has 2 lines but --ref"),
        ((run, "--max-len", "500"), "--max-len 500 is more than this model writes (max_positions - 1 = 63)"),
        ((run, "--output", str(tmp_path / "no" / "such" / "dir.de")), "cannot write --output"),
    ]
    for args, message in cases:
        result = _run(*args, input="A man.\n")
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr.replace("\n", " "), (args, result.stderr)


def test_text_that_is_not_utf8_is_named_by_line_and_nothing_is_written(translation_run: Path, tmp_path: Path) -> None:
    text = b"A man holds a ball.\nEin M\xe4dchen.\n"
    out = tmp_path / "out.de"
    # Through a process in Python's UTF-8 mode, where stdin hands undecodable bytes on as surrogates.
    env = {**os.environ, "PYTHONUTF8": "1", "PYTHONPATH": str(Path(tying.__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "tying.cli.main", "translate", str(translation_run), "--output", str(out)]
    proc = subprocess.run(args, input=text, capture_output=True, env=env, timeout=300)
    expected = "is not UTF-8 text: line 2 (byte 25: invalid continuation byte); nothing was written\n"
    assert proc.returncode == 1 and proc.stderr.decode() == f"error: standard input {expected}"
    (tmp_path / "in.en").write_bytes(text)
    result = _run(str(translation_run), "--input", str(tmp_path / "in.en"), "--output", str(out))
    assert result.exit_code == 1 and result.stderr == f"error: input file {str(tmp_path / 'in.en')!r} {expected}"
    assert not out.exists()
