"""Word-level language modelling (``task = "lm"``): the task (:class:`LMTask`) and its parts — the
word corpus reader and the built-in corpus, truncated-BPTT batching, and the training objectives
(cross-entropy, fused cross-entropy, REAL, the projection penalty). The models are
:class:`tying.models.LSTMLanguageModel`, :class:`tying.models.TransformerLanguageModel` and
:class:`tying.models.TrellisLanguageModel`."""

from tying._moved import moved_attribute
from tying.tasks.lm.batching import BPTTBatches, batchify
from tying.tasks.lm.corpus import Corpus, CorpusError, load_corpus
from tying.tasks.lm.losses import (
    LossConfig,
    LossFn,
    augmented_kl,
    build_loss,
    fused_lm_loss,
    lm_loss,
    perplexity,
    projection_penalty,
    real_loss,
    with_projection_penalty,
)
from tying.tasks.lm.stdlib_docs import VOCAB_SIZE, build_stdlib_corpus, builtin_corpus_dir, snapshot_dir, tokenize
from tying.tasks.lm.task import LMData, LMDataset, LMTask, LMTrain, LSTMModel, TransformerModel, TrellisModel, detach_state

__all__ = [
    "VOCAB_SIZE",
    "BPTTBatches",
    "Corpus",
    "CorpusError",
    "LMData",
    "LMDataset",
    "LMTask",
    "LMTrain",
    "LSTMModel",
    "LossConfig",
    "LossFn",
    "TransformerModel",
    "TrellisModel",
    "augmented_kl",
    "batchify",
    "build_loss",
    "build_stdlib_corpus",
    "snapshot_dir",
    "builtin_corpus_dir",
    "detach_state",
    "fused_lm_loss",
    "lm_loss",
    "load_corpus",
    "perplexity",
    "projection_penalty",
    "real_loss",
    "tokenize",
    "with_projection_penalty",
]


def __getattr__(name: str) -> object:
    return moved_attribute(__name__, name)
