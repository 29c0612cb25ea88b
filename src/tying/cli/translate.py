"""``tying translate``: translate lines with a trained translation model, or score it on a file pair.

The checkpoint (a file, or a run folder of the translation task: its ``best.safetensors``) holds
the model configuration and the subword models (:mod:`tying.tasks.translation.checkpoint`). Output line
*i* answers input line *i*: empty lines stay empty, and a line longer than the model reads is
truncated with a warning naming its number.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tying._text import plural
from tying.cli._outputs import check_outputs
from tying.cli.failures import fail

__all__ = ["translate_command"]


def _read_lines(path: Path | None, what: str) -> list[str]:
    """Lines of ``path`` (stdin when None), newlines stripped; a clear error for an unreadable file
    or text that is not UTF-8 (naming the line: stdin is read as bytes, because Python's UTF-8
    mode would pass undecodable bytes on as surrogates that SentencePiece then rejects)."""
    where = "standard input" if path is None else f"{what} {str(path)!r}"
    try:
        data = sys.stdin.buffer.read() if path is None else path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise fail(f"{where} is not UTF-8 text: line {line:,} (byte {exc.start:,}: {exc.reason}); nothing was written") from None
    return text.splitlines()


def translate_command(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A translation checkpoint, or a run folder of the translation task.")],
    input_file: Annotated[Path | None, typer.Option("--input", "-i", metavar="FILE", help="Sentences to translate, one per line (default: stdin).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the translations here (default: stdout).")] = None,
    beam: Annotated[int, typer.Option(min=1, help="Beam size (1: greedy search).")] = 4,
    length_penalty: Annotated[float, typer.Option(min=0.0, help="Length penalty alpha of beam search (0: none).")] = 0.6,
    max_len: Annotated[int | None, typer.Option(min=0, help="Most output subword tokens per sentence (default: 1.5 x source + 10).")] = None,
    evaluate: Annotated[bool, typer.Option("--eval", help="Score translations of --src against --ref: BLEU and chrF (sacrebleu).")] = False,
    src: Annotated[Path | None, typer.Option(metavar="FILE", help="With --eval: the source sentences.")] = None,
    ref: Annotated[Path | None, typer.Option(metavar="FILE", help="With --eval: the reference translations, line by line.")] = None,
) -> None:
    """Translate sentences (stdin or --input, one per line) with a trained model; with --eval,
    print BLEU and chrF of the translations of --src against --ref, with sacrebleu's signatures."""
    if evaluate and (src is None or ref is None):
        raise fail("--eval needs --src FILE and --ref FILE")
    if not evaluate and (src is not None or ref is not None):
        raise fail("--src and --ref go with --eval (to translate a file, use --input)")
    if output is not None:
        check_outputs(files=[("--output", output)])
    try:
        from tying.errors import CheckpointError
        from tying.tasks.translation import corpus_scores, load_translator, translate
    except ImportError as exc:
        raise fail(str(exc)) from None
    try:
        model, subwords = load_translator(checkpoint)
    except CheckpointError as exc:
        raise fail(str(exc)) from None
    limit = model.config.max_positions - 1
    if max_len is not None and max_len > limit:
        raise fail(f"--max-len {max_len} is more than this model writes (max_positions - 1 = {limit})")
    lines = _read_lines(src if evaluate else input_file, "source file" if evaluate else "input file")
    references = _read_lines(ref, "reference file") if ref is not None else []
    if evaluate and len(references) != len(lines):
        raise fail(f"--src {str(src)!r} has {plural(len(lines), 'line')} but --ref {str(ref)!r} has {len(references):,}; they must pair up")
    err = Console(stderr=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hypotheses = translate(model, subwords, lines, beam_size=beam, length_penalty=length_penalty, max_length=max_len)
    for w in caught:
        err.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", highlight=False, soft_wrap=True)
    text = "".join(h + "\n" for h in hypotheses)
    if output is not None:
        from tying._io import atomic_write_text

        try:
            atomic_write_text(output, text)
        except OSError as exc:
            raise fail(f"cannot write --output {str(output)!r}: {exc.strerror or exc}") from None
    elif not evaluate:
        sys.stdout.write(text)
    if evaluate:
        scores = corpus_scores(hypotheses, references)
        print(f"BLEU {scores.bleu:.2f}  ({scores.bleu_signature})")
        print(f"chrF {scores.chrf:.2f}  ({scores.chrf_signature})")
