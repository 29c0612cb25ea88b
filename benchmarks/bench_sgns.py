"""Skip-gram training speed: tying's SGNS (the ``sgns`` task's loop) against gensim's ``Word2Vec``,
one thread each, on WikiText-2's training text.

Every variant trains one epoch over the same text with the ``sgns-*`` recipes' settings (dim 100,
window 5, 5 noise words, min_count 5, subsampling 1e-3; ours in batches of 500 words with plain
SGD on sparse row gradients, as the engine runs them: step, zero_grad, backward, optimizer step):

* ``gensim``: ``Word2Vec(sg=1, negative=5, workers=1)``, one ``train(epochs=1)`` call after
  ``build_vocab`` (the vocabulary is not timed; neither is ours);
* ``untied``: ``sgns-untied`` (noise words drawn per centre word, the recipes' setting);
* ``untied/pair``: ``sgns-untied-pair`` (noise words drawn per pair, as word2vec does);
* ``reflected``: ``sgns-reflected`` (C = W D read through the tie's parametrization every step).

The variants alternate round after round (``--repeats``) in one process, and each one's median
epoch time gives its words/s: the words of the training text (all whitespace tokens, those out of
the vocabulary included, gensim's count) per second. The goal is the untied recipe at half
gensim's words/s or more; the ratios are of numbers measured in this one run.

    python benchmarks/bench_sgns.py             # WikiText-2 under $TYING_DATA_ROOT (or --data)
    python benchmarks/bench_sgns.py --quick     # the first 300 lines, a smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median, report_goals  # noqa: E402

from tying.data.files import resolve_corpus  # noqa: E402
from tying.machine import describe_machine  # noqa: E402
from tying.recipes import load_recipe  # noqa: E402
from tying.training.config import build_optimizer  # noqa: E402

GOAL = 0.5  # our untied SGNS words/s against gensim's, one thread each
RECIPES = {"untied": "sgns-untied", "untied/pair": "sgns-untied-pair", "reflected": "sgns-reflected"}


def ours(recipe: str, folder: Path) -> Callable[[], None]:
    """One epoch of ``recipe`` as the engine trains it (epoch 1's batches every time)."""
    task = load_recipe(recipe, [f"data.corpus={str(folder)!r}"]).make_task()
    data = task.load_data(None)
    model = task.build_model(data)
    optimizer = build_optimizer(task.train, model)

    def epoch() -> None:
        for batch in task.train_batches(data, 1):
            out = task.step(model, batch, None)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

    return epoch


def gensim_epoch(folder: Path) -> Callable[[], None]:
    from gensim.models import Word2Vec

    with open(folder / "train.txt", encoding="utf-8") as f:
        sentences = [words for words in (line.split() for line in f) if words]
    w2v = Word2Vec(vector_size=100, window=5, negative=5, min_count=5, sample=1e-3, sg=1, hs=0, workers=1, seed=1)
    w2v.build_vocab(sentences)
    return lambda: w2v.train(sentences, total_examples=len(sentences), epochs=1)


def corpus(quick: bool, data: str | None) -> tuple[Path, str]:
    folder = Path(data) if data else resolve_corpus("wikitext-2")
    assert folder is not None
    if not quick:
        return folder, f"{folder}/train.txt"
    small = Path(tempfile.mkdtemp(prefix="bench-sgns-"))
    for split in ("train", "valid", "test"):
        lines = (folder / f"{split}.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:300]
        (small / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    return small, f"the first 300 lines of {folder}/train.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the first 300 lines of each split, a smoke test")
    ap.add_argument("--data", help="a WikiText-2 folder (default: wikitext-2 under $TYING_DATA_ROOT)")
    ap.add_argument("--repeats", type=int, default=2, help="epochs timed per variant")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder, where = corpus(args.quick, args.data)
    words = sum(len(line.split()) for line in (folder / "train.txt").open(encoding="utf-8"))
    print(f"machine: {describe_machine()}")
    print(f"text: {where}, {words:,} words; one epoch per repeat, {args.repeats} repeats, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    fns = {"gensim": gensim_epoch(folder), **{name: ours(recipe, folder) for name, recipe in RECIPES.items()}}
    start = time.perf_counter()
    times = interleaved(fns, args.repeats, warmup=0)
    rate = {name: words / median(t) for name, t in times.items()}
    print(f"{'variant':<12} | {'epoch s (median)':>16} | {'words/s':>10} | {'vs gensim':>9}")
    print("-" * 58)
    for name in fns:
        print(f"{name:<12} | {median(times[name]):>16.2f} | {rate[name]:>10,.0f} | {rate[name] / rate['gensim']:>8.2f}x")
    print(f"({time.perf_counter() - start:.0f} s of timed epochs)")
    ratio = rate["untied"] / rate["gensim"]
    goals = [(ratio >= GOAL, f"sgns-untied trains {ratio:.2f}x gensim's words/s at one thread (goal >= {GOAL}x)")]
    raise SystemExit(report_goals(goals, args.quick))


if __name__ == "__main__":
    main()
