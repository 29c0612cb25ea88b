"""Translation (``task = "translation"``): the task (:class:`TranslationTask`) and its parts — the
bitext and its subword vocabularies, token-budget batches, greedy and beam-search decoding,
text-level translation, BLEU/chrF, the training loss and evaluation, and self-contained
checkpoints. The model is :class:`tying.models.TranslationTransformer`. Needs the
``experiments`` extra (pydantic, sentencepiece, sacrebleu)."""

from tying.tasks.translation.batches import TranslationBatch, token_batches
from tying.tasks.translation.bitext import Bitext, BitextError, builtin_bitext, read_bitext
from tying.tasks.translation.checkpoint import checkpoint_metadata, find_checkpoint, load_translator
from tying.tasks.translation.decoding import beam_search, default_max_length, greedy_search, translate_ids
from tying.tasks.translation.evaluation import METRICS, TranslationEvaluation, evaluate, reference_loss, translation_loss
from tying.tasks.translation.metrics import CorpusScores, corpus_scores, signatures
from tying.tasks.translation.subword import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Subwords, subword_cache_dir, train_subwords
from tying.tasks.translation.task import (
    TranslationData,
    TranslationDataset,
    TranslationEval,
    TranslationModel,
    TranslationTask,
    TranslationTrain,
)
from tying.tasks.translation.translate import TruncationWarning, translate

__all__ = [
    "METRICS",
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "UNK_ID",
    "Bitext",
    "BitextError",
    "CorpusScores",
    "Subwords",
    "TranslationBatch",
    "TranslationData",
    "TranslationDataset",
    "TranslationEval",
    "TranslationEvaluation",
    "TranslationModel",
    "TranslationTask",
    "TranslationTrain",
    "TruncationWarning",
    "beam_search",
    "builtin_bitext",
    "checkpoint_metadata",
    "corpus_scores",
    "default_max_length",
    "evaluate",
    "find_checkpoint",
    "greedy_search",
    "load_translator",
    "read_bitext",
    "reference_loss",
    "signatures",
    "subword_cache_dir",
    "token_batches",
    "train_subwords",
    "translate",
    "translate_ids",
    "translation_loss",
]
