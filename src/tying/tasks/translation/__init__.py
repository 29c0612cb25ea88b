"""Translation components: decoding, text-level translation, BLEU/chrF, the training loss and
evaluation (the model is :class:`tying.models.TranslationTransformer`, the data
:mod:`tying.data.bitext`, :mod:`tying.data.subword` and :mod:`tying.data.translation_batches`).
Needs the ``experiments`` extra (sentencepiece, sacrebleu)."""

from tying.translation.checkpoint import checkpoint_metadata, find_checkpoint, load_translator
from tying.translation.decoding import beam_search, default_max_length, greedy_search, translate_ids
from tying.translation.metrics import CorpusScores, corpus_scores, signatures
from tying.translation.training import METRICS, TranslationEvaluation, evaluate, reference_loss, translation_loss
from tying.translation.translate import TruncationWarning, translate

__all__ = [
    "METRICS",
    "CorpusScores",
    "TranslationEvaluation",
    "TruncationWarning",
    "beam_search",
    "checkpoint_metadata",
    "corpus_scores",
    "default_max_length",
    "evaluate",
    "find_checkpoint",
    "greedy_search",
    "load_translator",
    "reference_loss",
    "signatures",
    "translate",
    "translate_ids",
    "translation_loss",
]
