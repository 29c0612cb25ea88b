"""Language-modelling data: corpora, vocabularies and truncated-BPTT batching."""

from tying.data.batching import BPTTBatches, batchify
from tying.data.corpus import SPLITS, Corpus, CorpusError, load_corpus
from tying.data.stdlib_docs import VOCAB_SIZE, build_stdlib_corpus, builtin_corpus_dir, default_cache_dir, tokenize
from tying.data.vocab import EOS, UNK, Dictionary

__all__ = [
    "EOS",
    "UNK",
    "SPLITS",
    "VOCAB_SIZE",
    "Dictionary",
    "Corpus",
    "CorpusError",
    "load_corpus",
    "builtin_corpus_dir",
    "build_stdlib_corpus",
    "default_cache_dir",
    "tokenize",
    "batchify",
    "BPTTBatches",
]
