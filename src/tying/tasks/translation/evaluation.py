"""The training loss and the evaluation of a translation model, for a trainer to call.

Training minimises the label-smoothed cross-entropy (Szegedy et al. 2016; epsilon = 0.1 in
Vaswani et al. 2017) per real target token, through the model's fused output head.
Evaluation reports the plain (unsmoothed) negative log-likelihood per target token, and
BLEU and chrF of beam-search translations, detokenised, against the raw references
(:func:`tying.tasks.translation.corpus_scores`, sacrebleu signatures recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from tying.tasks.translation.batches import TranslationBatch, token_batches
from tying.tasks.translation.metrics import corpus_scores
from tying.tasks.translation.subword import Subwords
from tying.tasks.translation.translate import translate

if TYPE_CHECKING:
    from tying.models.translation import TranslationTransformer

__all__ = ["METRICS", "TranslationEvaluation", "translation_loss", "reference_loss", "evaluate"]

#: Metric name -> (which direction is better, unit).
METRICS = {"loss": ("lower", "nats/token"), "bleu": ("higher", "BLEU"), "chrf": ("higher", "chrF")}


def translation_loss(model: TranslationTransformer, batch: TranslationBatch) -> torch.Tensor:
    """Mean label-smoothed cross-entropy (``model.config.label_smoothing``) over the batch's real
    target tokens; ``batch`` on the model's device."""
    if batch.tgt_in is None or batch.tgt_out is None:
        raise ValueError("translation_loss needs a batch with targets; this one holds sources only")
    return model.loss(batch.src, batch.tgt_in, batch.tgt_out)


@dataclass(frozen=True)
class TranslationEvaluation:
    """Scores of one evaluation; :meth:`metrics` gives the named numbers of :data:`METRICS`."""

    loss: float
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    hypotheses: list[str]

    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss, "bleu": self.bleu, "chrf": self.chrf}


@torch.no_grad()
def reference_loss(model: TranslationTransformer, subwords: Subwords, sources: list[str], references: list[str], *, max_tokens: int = 4096) -> float:
    """Negative log-likelihood per reference token of ``references`` given ``sources`` (no label
    smoothing, eval mode; ``</s>`` counted), without decoding."""
    device = next(model.parameters()).device
    batches = token_batches(
        subwords.encode_source(sources), subwords.encode_target(references), max_tokens=max_tokens, max_length=model.config.max_positions
    )
    was_training = model.training
    model.eval()
    try:
        total, tokens = 0.0, 0
        for batch in batches:
            b = batch.to(device)
            assert b.tgt_in is not None and b.tgt_out is not None  # batched with targets above
            total += float(model.loss(b.src, b.tgt_in, b.tgt_out, reduction="sum", label_smoothing=0.0))
            tokens += batch.target_tokens
    finally:
        model.train(was_training)
    return total / max(tokens, 1)


@torch.no_grad()
def evaluate(
    model: TranslationTransformer,
    subwords: Subwords,
    sources: list[str],
    references: list[str],
    *,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_tokens: int = 4096,
) -> TranslationEvaluation:
    """:func:`reference_loss` and the BLEU/chrF of :func:`tying.tasks.translation.translate` output for
    ``sources`` against ``references``."""
    loss = reference_loss(model, subwords, sources, references, max_tokens=max_tokens)
    hypotheses = translate(model, subwords, sources, beam_size=beam_size, length_penalty=length_penalty, max_tokens=max_tokens)
    scores = corpus_scores(hypotheses, references)
    return TranslationEvaluation(loss, scores.bleu, scores.chrf, scores.bleu_signature, scores.chrf_signature, hypotheses)
