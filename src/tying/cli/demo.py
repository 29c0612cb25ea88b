"""``tying demo``: the same LSTM language model trained with and without input/output embedding
tying (Press & Wolf 2017, arXiv 1608.05859; Inan et al. 2017, arXiv 1611.01462), compared.

Both models start from the same seed (so their embeddings and LSTMs start equal; the untied
model's separate output matrix is drawn after them) and see the same data and dropout masks.
Defaults take about 3 minutes on 2 CPU cores with the built-in corpus: 2 layers of 200 units,
4 epochs of 250 windows of 20 x 35 tokens (46% of the built-in training text per epoch; each
epoch continues where the previous one stopped). With ``--data`` the same cap keeps the time
similar for a 10k vocabulary (PTB: about 3.5 minutes, 19% of its training text per epoch);
a larger vocabulary (WikiText-2: 33k) makes every step slower, so lower ``--max-batches`` there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console

import tying
from tying.data import Corpus, CorpusError, load_corpus
from tying.cli._command import invoked_command
from tying.machine import describe_machine
from tying.data.batching import BPTTBatches, batchify
from tying.models import LSTMConfig, LSTMLanguageModel
from tying.training import Run, TrainConfig, Trainer, comparison_markdown, comparison_table, plot_valid_ppl

__all__ = ["demo", "run_demo"]

# Defaults of (size, layers, epochs, max_batches): normal, and --quick (seconds, for tests).
_FULL = (200, 2, 4, 250)
_QUICK = (32, 1, 2, 10)


def run_demo(
    corpus: Corpus,
    *,
    size: int,
    layers: int,
    dropout: float,
    config: TrainConfig,
    out: Path,
    console: Console,
    resume: bool = False,
) -> list[Run]:
    """Train a tied and an untied :class:`LSTMLanguageModel` on ``corpus`` with checkpoints under
    ``out/tied`` and ``out/untied`` (continuing from them with ``resume``); returns the two runs."""
    runs = []
    for tie in (True, False):
        name = "tied" if tie else "untied"
        torch.manual_seed(config.seed)
        model = LSTMLanguageModel(LSTMConfig(len(corpus.dictionary), size, size, layers, dropout, tie))
        counts = tying.summary(model)
        console.rule(f"{name}: {counts.unique_parameters:,} unique parameters")
        trainer = Trainer(model, corpus.train, corpus.valid, corpus.test, config, out / name, console=console)
        runs.append(Run(name, counts.total_parameters, counts.unique_parameters, trainer.fit(resume=resume)))
    return runs


def demo(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="Corpus folder with train.txt, valid.txt, test.txt (e.g. PTB). Default: the built-in corpus."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the plot, the metrics JSON and checkpoints.")] = Path("runs/demo"),
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs. (default 4; --quick: 2)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and dropout (the same for both models).")] = 1111,
    size: Annotated[
        int | None, typer.Option(min=1, help="Embedding and LSTM width (equal, as tying needs). (default 200; --quick: 32)")
    ] = None,
    layers: Annotated[int | None, typer.Option(min=1, help="LSTM layers. (default 2; --quick: 1)")] = None,
    dropout: Annotated[float, typer.Option(min=0.0, max=1.0, help="Dropout probability.")] = 0.2,
    max_batches: Annotated[
        int | None,
        typer.Option(min=0, help="Training windows per epoch; 0: the whole training set. (default 250; --quick: 10)"),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny model and short epochs: a smoke test in seconds.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue both runs from their last checkpoints in --out (e.g. with more --epochs).")
    ] = False,
) -> None:
    """Train the same small LSTM language model tied and untied and compare them side by side."""
    console = Console()
    d_size, d_layers, d_epochs, d_batches = _QUICK if quick else _FULL
    size, layers = size or d_size, layers or d_layers
    cap = d_batches if max_batches is None else max_batches
    config = TrainConfig(epochs=epochs or d_epochs, seed=seed, max_batches=cap or None)
    try:
        corpus = load_corpus(data)
    except (FileNotFoundError, CorpusError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc

    console.print(
        f"corpus {str(corpus.path)!r}{'' if data else ' (built-in: Python standard-library docstrings)'}: "
        f"vocabulary {len(corpus.dictionary):,}, tokens train {corpus.train.numel():,} / "
        f"valid {corpus.valid.numel():,} / test {corpus.test.numel():,}",
        highlight=False,
    )
    windows = len(BPTTBatches(batchify(corpus.train, config.batch_size), config.bptt))
    per_epoch = windows if config.max_batches is None else min(windows, config.max_batches)
    console.print(
        f"model: {layers}-layer LSTM, {size} units, dropout {dropout}; SGD lr {config.lr:g}, clip {config.clip:g}, "
        f"lr / {config.lr_decay:g} when validation does not improve; {config.epochs} epochs of "
        f"{per_epoch:,} of the {windows:,} windows of {config.batch_size} x {config.bptt} training tokens"
        + (f" ({per_epoch / windows:.0%}; each epoch continues where the last stopped)" if per_epoch < windows else ""),
        highlight=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    runs = run_demo(corpus, size=size, layers=layers, dropout=dropout, config=config, out=out, console=console, resume=resume)

    console.print(comparison_table(runs, title="tied vs untied"))
    console.print(f"measured on: {describe_machine()}", highlight=False)
    plot = plot_valid_ppl(runs, out / "tying-demo.png", title=f"{layers}x{size} LSTM LM on {corpus.path.name}")
    metrics = out / "tying-demo.json"
    report = {
        "command": invoked_command(ctx),
        "machine": describe_machine(),
        "corpus": {
            "path": str(corpus.path),
            "vocab_size": len(corpus.dictionary),
            **{split: getattr(corpus, split).numel() for split in ("train", "valid", "test")},
        },
        "model": {"size": size, "layers": layers, "dropout": dropout},
        "train_config": config.to_dict(),
        "runs": [run.to_dict() for run in runs],
    }
    metrics.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = out / "tying-demo.md"
    markdown.write_text(
        f"# tying demo: {layers}x{size} LSTM language model, tied vs untied, on {corpus.path.name}\n\n"
        f"Command: `{report['command']}`  \nMachine: {report['machine']}\n\n"
        f"{comparison_markdown(runs)}\n![validation perplexity per epoch]({plot.name})\n",
        encoding="utf-8",
    )
    console.print(f"wrote {plot}, {metrics} and {markdown}", highlight=False)
