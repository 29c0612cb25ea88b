"""Train a tiny tied translation model on the built-in English-German corpus and watch it learn.

    OMP_NUM_THREADS=1 python examples/translate_builtin.py                # three-way tying, about a minute on one busy core
    OMP_NUM_THREADS=1 python examples/translate_builtin.py --tie joint --epochs 5

Each epoch prints the mean training loss (label-smoothed), then the validation loss per token and
the BLEU/chrF of beam-search translations; at the end a few test sentences are translated. The
corpus (:func:`tying.tasks.translation.builtin_bitext`) is generated, so this needs no download; the same code
reads Multi30k with ``tying.tasks.translation.read_bitext(FOLDER)`` and a larger model.
"""

from __future__ import annotations

import argparse
import time

import torch

import tying
from tying.tasks.translation import builtin_bitext, token_batches, train_subwords
from tying.models import TranslationConfig, TranslationTransformer
from tying.tasks.translation import evaluate, translate, translation_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tie", default="three_way", choices=["none", "decoder", "three_way", "joint"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    bitext = builtin_bitext()
    subwords = train_subwords(bitext, 128)  # joint vocabulary, cached in the user cache folder
    config = TranslationConfig(
        subwords.source_size, subwords.target_size, tie=args.tie, embedding_size=64, num_heads=4,
        encoder_layers=2, decoder_layers=2, ffn_size=128, dropout=0.1,
    )  # fmt: skip
    torch.manual_seed(args.seed)
    model = TranslationTransformer(config)
    summary = tying.summary(model)
    print(f"{args.tie}: {summary.unique_parameters:,} unique of {summary.total_parameters:,} parameters; ties {[g.paths for g in tying.find_ties(model)]}")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.98))
    source, target = subwords.encode_source(bitext.source("train")), subwords.encode_target(bitext.target("train"))
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        losses = []
        for batch in token_batches(source, target, max_tokens=1024, shuffle=True, seed=args.seed + epoch):
            loss = translation_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        result = evaluate(model, subwords, bitext.source("valid"), bitext.target("valid"))
        print(
            f"epoch {epoch}: train loss {sum(losses) / len(losses):.3f} (first batch {losses[0]:.3f}, last {losses[-1]:.3f}), "
            f"valid loss {result.loss:.3f}, BLEU {result.bleu:.1f}, chrF {result.chrf:.1f}, {time.perf_counter() - start:.0f} s"
        )
    print(f"BLEU signature: {result.bleu_signature}")
    for src, hyp in zip(bitext.source("test")[:3], translate(model, subwords, bitext.source("test")[:3]), strict=True):
        print(f"  {src}\n    -> {hyp}")


if __name__ == "__main__":
    main()
