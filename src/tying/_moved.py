"""Old import paths of what moved into the task packages (``tying/tasks/<name>/``), kept working
for one release: importing a moved module or reading a moved name by its old path gives the very
same object as the new path, with a :class:`DeprecationWarning` naming the new one.

Modules are served by a finder on :data:`sys.meta_path` rather than by shim files at the old
paths, so the moved files have no stand-in there and version control follows their renames.
Names that moved out of a package (``tying.data.Corpus``) are served by the package's module
``__getattr__`` through :func:`moved_attribute`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED_MODULES", "MOVED_NAMES", "moved_attribute", "install"]

_REMOVAL = "the old path will be removed in tying 0.3"

#: Old module path -> new module path.
MOVED_MODULES = {
    "tying.translation": "tying.tasks.translation",
    "tying.translation.checkpoint": "tying.tasks.translation.checkpoint",
    "tying.translation.decoding": "tying.tasks.translation.decoding",
    "tying.translation.metrics": "tying.tasks.translation.metrics",
    "tying.translation.training": "tying.tasks.translation.evaluation",
    "tying.translation.translate": "tying.tasks.translation.translate",
    "tying.training.losses": "tying.tasks.lm.losses",
    "tying.data.batching": "tying.tasks.lm.batching",
    "tying.data.corpus": "tying.tasks.lm.corpus",
    "tying.data.stdlib_docs": "tying.tasks.lm.stdlib_docs",
    "tying.data.bitext": "tying.tasks.translation.bitext",
    "tying.data.subword": "tying.tasks.translation.subword",
    "tying.data.translation_batches": "tying.tasks.translation.batches",
    "tying.data.digits": "tying.tasks.autoencoder.digits",
}

_LM_LOSSES = ("LossConfig", "LossFn", "augmented_kl", "build_loss", "fused_lm_loss", "lm_loss", "perplexity",
              "projection_penalty", "real_loss", "with_projection_penalty")  # fmt: skip
_DATA = {
    "tying.tasks.lm.batching": ("BPTTBatches", "batchify"),
    "tying.tasks.lm.corpus": ("Corpus", "CorpusError", "load_corpus"),
    "tying.tasks.lm.stdlib_docs": ("VOCAB_SIZE", "build_stdlib_corpus", "builtin_corpus_dir", "tokenize"),
    "tying.tasks.translation.bitext": ("Bitext", "BitextError", "builtin_bitext", "read_bitext"),
    "tying.tasks.translation.subword": ("BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID", "Subwords", "subword_cache_dir", "train_subwords"),
    "tying.tasks.translation.batches": ("TranslationBatch", "token_batches"),
}
#: (package, name) -> the module that holds the name now.
MOVED_NAMES = {
    **{("tying.data", name): module for module, names in _DATA.items() for name in names},
    **{("tying.training", name): "tying.tasks.lm.losses" for name in _LM_LOSSES},
    **{("tying.tasks.lm", name): "tying.data.files" for name in ("DEFAULT_DATA_ROOT", "DataNotFoundError", "resolve_corpus")},
}


def moved_attribute(package: str, name: str) -> object:
    """``package.name`` for a name that moved (with a DeprecationWarning); for a package's module
    ``__getattr__``, which raises the usual AttributeError for any other name."""
    module = MOVED_NAMES.get((package, name))
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    warnings.warn(f"{package}.{name} moved to {module}.{name}; {_REMOVAL}", DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(module), name)


class _Alias(importlib.abc.Loader):
    """Loads an old module path as the module at its new path (the same object)."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new}; {_REMOVAL}", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the old path's spec on the shared module: give it back its own.
        module.__spec__ = self.spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        return None if new is None else importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder of the old module paths first on :data:`sys.meta_path` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
