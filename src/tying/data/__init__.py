"""Data utilities shared by every task: the vocabulary :class:`Dictionary`, where named data sets
and caches live (:mod:`tying.data.files`). Each task's own readers and batching live in its
package (``tying.tasks.lm``: word corpora and BPTT batches; ``tying.tasks.translation``: bitext,
subwords and token batches; ``tying.tasks.autoencoder``: the digits); their old names here still
work for one release, with a DeprecationWarning."""

from tying._moved import moved_attribute
from tying.data.files import SPLITS, DEFAULT_DATA_ROOT, DataError, DataNotFoundError, default_cache_dir, resolve_corpus
from tying.data.vocab import EOS, UNK, Dictionary

__all__ = [
    "EOS",
    "UNK",
    "SPLITS",
    "DEFAULT_DATA_ROOT",
    "DataError",
    "DataNotFoundError",
    "Dictionary",
    "default_cache_dir",
    "resolve_corpus",
]


def __getattr__(name: str) -> object:
    return moved_attribute(__name__, name)
