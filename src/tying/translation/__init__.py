"""Translation components: decoding, text-level translation, BLEU/chrF, the training loss and
evaluation (the model is :class:`tying.models.TranslationTransformer`, the data
:mod:`tying.data.bitext`, :mod:`tying.data.subword` and :mod:`tying.data.translation_batches`).
Needs the ``experiments`` extra (sentencepiece, sacrebleu)."""

from tying.translation.decoding import beam_search, default_max_length, greedy_search, translate_ids
from tying.translation.metrics import CorpusScores, corpus_scores
from tying.translation.training import METRICS, TranslationEvaluation, evaluate, translation_loss
from tying.translation.translate import TruncationWarning, translate

__all__ = [
    "METRICS",
    "CorpusScores",
    "TranslationEvaluation",
    "TruncationWarning",
    "beam_search",
    "corpus_scores",
    "default_max_length",
    "evaluate",
    "greedy_search",
    "translate",
    "translate_ids",
    "translation_loss",
]
