"""Data: language-modelling corpora, vocabularies and truncated-BPTT batching; translation bitext,
subword vocabularies and token-budget batches."""

from tying.data.batching import BPTTBatches, batchify
from tying.data.bitext import Bitext, BitextError, builtin_bitext, read_bitext
from tying.data.corpus import SPLITS, Corpus, CorpusError, load_corpus
from tying.data.stdlib_docs import VOCAB_SIZE, build_stdlib_corpus, builtin_corpus_dir, default_cache_dir, snapshot_dir, tokenize
from tying.data.subword import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Subwords, subword_cache_dir, train_subwords
from tying.data.translation_batches import TranslationBatch, token_batches
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
    "snapshot_dir",
    "default_cache_dir",
    "tokenize",
    "batchify",
    "BPTTBatches",
    "Bitext",
    "BitextError",
    "read_bitext",
    "builtin_bitext",
    "PAD_ID",
    "UNK_ID",
    "BOS_ID",
    "EOS_ID",
    "Subwords",
    "train_subwords",
    "subword_cache_dir",
    "TranslationBatch",
    "token_batches",
]
