"""translation_loss and evaluate: what they compute, and their contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tying.tasks.translation import PAD_ID, builtin_bitext, token_batches, train_subwords
from tying.models import TranslationConfig, TranslationTransformer
from tying.tasks.translation import METRICS, corpus_scores, evaluate, translate, translation_loss


@pytest.fixture
def setup(tmp_path: Path):
    bitext = builtin_bitext(sizes=(200, 8, 8))
    subwords = train_subwords(bitext, 80, cache_dir=tmp_path)
    torch.manual_seed(0)
    config = TranslationConfig(subwords.source_size, subwords.target_size, embedding_size=16, num_heads=2, encoder_layers=1,
                               decoder_layers=1, ffn_size=16, label_smoothing=0.1, max_positions=64)  # fmt: skip
    return bitext, subwords, TranslationTransformer(config)


def test_translation_loss_is_the_smoothed_mean_over_real_target_tokens(setup) -> None:
    bitext, subwords, model = setup
    batch = token_batches(subwords.encode_source(bitext.source("valid")), subwords.encode_target(bitext.target("valid")))[0]
    model.eval()
    logits = model(batch.src, batch.tgt_in)
    expected = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=0.1)
    torch.testing.assert_close(translation_loss(model, batch), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="translation_loss needs a batch with targets; this one holds sources only"):
        translation_loss(model, token_batches(subwords.encode_source(bitext.source("valid")))[0])


def test_evaluate_reports_unsmoothed_loss_and_the_scores_of_its_translations(setup) -> None:
    bitext, subwords, model = setup
    sources, references = bitext.source("valid"), bitext.target("valid")
    model.train()
    result = evaluate(model, subwords, sources, references, beam_size=2, max_tokens=64)
    assert model.training  # restored
    model.eval()
    batches = token_batches(subwords.encode_source(sources), subwords.encode_target(references), max_tokens=64)
    with torch.no_grad():
        nll = sum(F.cross_entropy(model(b.src, b.tgt_in).flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD_ID, reduction="sum") for b in batches)
    tokens = sum(b.target_tokens for b in batches)
    assert result.loss == pytest.approx(float(nll) / tokens, rel=1e-5)
    assert result.hypotheses == translate(model, subwords, sources, beam_size=2, max_tokens=64)
    scores = corpus_scores(result.hypotheses, references)
    assert result.metrics() == {"loss": result.loss, "bleu": scores.bleu, "chrf": scores.chrf} and set(METRICS) == set(result.metrics())
