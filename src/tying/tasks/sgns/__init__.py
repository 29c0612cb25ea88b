"""Skip-gram word vectors with untied, tied and reflected context vectors (``task = "sgns"``),
gensim's ``Word2Vec`` as a peer, and gensim's evaluators: the task (:class:`SGNSTask`), its data
(:mod:`~tying.tasks.sgns.corpus`), scoring and export (:mod:`~tying.tasks.sgns.evaluation`). The
model is :class:`tying.models.SkipGram`."""

from tying.tasks.sgns.corpus import EpochBatches, NoiseSampler, Stream, Vocabulary, keep_probabilities, read_stream, read_vocabulary, window_pairs
from tying.tasks.sgns.evaluation import (
    analogy_accuracy, export_checkpoint, export_vectors, keyed_vectors, similarity_scores, vectors_of, word_pair_spearman,
)  # fmt: skip
from tying.tasks.sgns.task import SGNSCorpus, SGNSData, SGNSModel, SGNSTask, SGNSTrain

__all__ = [
    "EpochBatches",
    "NoiseSampler",
    "SGNSCorpus",
    "SGNSData",
    "SGNSModel",
    "SGNSTask",
    "SGNSTrain",
    "Stream",
    "Vocabulary",
    "analogy_accuracy",
    "export_checkpoint",
    "export_vectors",
    "keep_probabilities",
    "keyed_vectors",
    "read_stream",
    "read_vocabulary",
    "similarity_scores",
    "vectors_of",
    "window_pairs",
    "word_pair_spearman",
]
