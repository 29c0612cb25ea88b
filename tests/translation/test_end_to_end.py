"""A tiny translation model on the built-in corpus: the loss falls, evaluation reports its metrics,
and the model translates the same after tying.save and tying.load into a fresh model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tying
from tying.tasks.translation import builtin_bitext, token_batches, train_subwords
from tying.models import TranslationConfig, TranslationTransformer
from tying.tasks.translation import METRICS, evaluate, translate, translation_loss


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["three_way", "joint"])
def test_train_save_load_translate(mode: str, tmp_path: Path) -> None:
    bitext = builtin_bitext(sizes=(600, 20, 20))
    subwords = train_subwords(bitext, 100, cache_dir=tmp_path)
    config = TranslationConfig(
        subwords.source_size, subwords.target_size, tie=mode, embedding_size=32, num_heads=4, encoder_layers=1,
        decoder_layers=1, ffn_size=64, dropout=0.0, max_positions=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = TranslationTransformer(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
    losses = []
    source, target = subwords.encode_source(bitext.source("train")), subwords.encode_target(bitext.target("train"))
    for epoch in range(4):
        for batch in token_batches(source, target, max_tokens=800, shuffle=True, seed=epoch):
            loss = translation_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses

    result = evaluate(model, subwords, bitext.source("test"), bitext.target("test"), beam_size=2)
    assert set(result.metrics()) == set(METRICS) and result.loss > 0 and 0 <= result.bleu <= 100 and result.chrf > 0
    assert result.bleu_signature.startswith("nrefs:1|") and len(result.hypotheses) == 20

    path = tying.save(model, tmp_path / "mt.safetensors")
    torch.manual_seed(1)
    fresh = TranslationTransformer(config)
    tying.load(fresh, path)
    assert [g.paths for g in tying.find_ties(fresh)] == [["src_embed.weight", "tgt_embed.weight", "output.weight"]]
    lines = bitext.source("valid")
    assert translate(fresh, subwords, lines, beam_size=3) == translate(model, subwords, lines, beam_size=3)
