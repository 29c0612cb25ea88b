"""Subword vocabularies for translation, trained with SentencePiece on the training split only.

SentencePiece (Kudo & Richardson 2018, arXiv 1808.06226) learns a unigram-LM or BPE segmentation
from raw text and maps it back losslessly, so translations are detokenised by ``decode`` and
scored with BLEU against the raw references. Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>`` (begin)
and ``</s>`` (end) in every vocabulary built here, the defaults of
:class:`tying.models.TranslationConfig`.

*Joint* vocabularies are learnt from the source and target training text together and serve
both sides: three-way and joint input-output tying need them (one embedding for both languages).
*Separate* vocabularies (one per language) are the other choice for untied and decoder-tied
models; :func:`train_subwords` defaults to joint for every mode, so that the modes compare on
equal vocabularies and differ only in their ties.

Trained models are cached by a SHA-256 of everything that determines them (the training text,
the options, the SentencePiece version), in the user cache (:func:`subword_cache_dir`), never
beside the data: a corpus folder may be read-only or shared, and is left as it was. They are
written atomically; a second call with the same inputs loads in milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tying._io import atomic_write
from tying.data.files import default_cache_dir
from tying.tasks.translation.bitext import Bitext

if TYPE_CHECKING:
    import sentencepiece

__all__ = ["PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "Subwords", "train_subwords", "subword_cache_dir"]

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
# Bump when the training options below change meaning, so stale cached models are not read.
_FORMAT = 1


def _sentencepiece():  # noqa: ANN202 - the module, imported on first use (an optional dependency)
    try:
        import sentencepiece
    except ImportError as exc:
        raise ImportError("subword vocabularies need sentencepiece: pip install 'tying[experiments]'") from exc
    return sentencepiece


def _processor(proto: bytes) -> sentencepiece.SentencePieceProcessor:
    return _sentencepiece().SentencePieceProcessor(model_proto=proto)


class Subwords:
    """The source and target subword models of a translation model (one shared model if joint).

    Args:
        source_proto, target_proto: serialized SentencePiece models (the same bytes when joint),
            which is what a checkpoint stores to rebuild the tokenizers.
    """

    def __init__(self, source_proto: bytes, target_proto: bytes) -> None:
        self.source_proto, self.target_proto = source_proto, target_proto
        self.joint = source_proto == target_proto
        self._src = _processor(source_proto)
        self._tgt = self._src if self.joint else _processor(target_proto)

    def __repr__(self) -> str:
        sizes = f"{self.source_size}" if self.joint else f"{self.source_size}/{self.target_size}"
        return f"Subwords({'joint' if self.joint else 'separate'}, {sizes} pieces)"

    @property
    def source_size(self) -> int:
        return self._src.get_piece_size()

    @property
    def target_size(self) -> int:
        return self._tgt.get_piece_size()

    def encode_source(self, lines: list[str]) -> list[list[int]]:
        """Subword ids of each source line, ``</s>`` appended (the encoder reads it as the end)."""
        return [ids + [EOS_ID] for ids in self._src.encode(lines)]

    def encode_target(self, lines: list[str]) -> list[list[int]]:
        """Subword ids of each target line, without ``<s>``/``</s>`` (the batches add them)."""
        return self._tgt.encode(lines)

    def decode_target(self, ids: list[list[int]]) -> list[str]:
        """Detokenised text of target id sequences (special ids dropped)."""
        return self._tgt.decode([[i for i in seq if i > EOS_ID] for seq in ids])


def subword_cache_dir() -> Path:
    """``<user cache>/subwords``: ``$TYING_CACHE_DIR/subwords``, else under ``$XDG_CACHE_HOME/tying``,
    else under ``~/.cache/tying`` (:func:`tying.data.default_cache_dir`)."""
    return default_cache_dir() / "subwords"


def _train(lines: list[str], options: dict[str, object], cache: Path) -> bytes:
    """The serialized model trained on ``lines`` with ``options``: from ``cache`` if a model of
    the same text, options and SentencePiece version is there, else trained and stored there."""
    spm = _sentencepiece()
    key = hashlib.sha256(json.dumps([_FORMAT, spm.__version__, options], sort_keys=True).encode())
    for line in lines:
        key.update(line.encode())
        key.update(b"\n")
    path = cache / f"{key.hexdigest()[:32]}.model"
    if path.is_file():
        return path.read_bytes()
    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=out, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            character_coverage=1.0, num_threads=1, minloglevel=2, **options,
        )  # fmt: skip
    except RuntimeError as exc:  # e.g. "Vocabulary size is too high (8000). Please set it to a value <= 512."
        raise ValueError(f"cannot train a SentencePiece vocabulary with {options}: {exc}") from exc
    proto = out.getvalue()

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(proto)

    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as exc:  # a read-only file system: the model is still good, just not cached
        warnings.warn(f"could not cache the SentencePiece model in {str(cache)!r}: {exc}", stacklevel=3)
    return proto


def train_subwords(
    bitext: Bitext,
    vocab_size: int = 8000,
    *,
    joint: bool = True,
    model_type: Literal["unigram", "bpe"] = "unigram",
    cache_dir: str | os.PathLike[str] | None = None,
) -> Subwords:
    """SentencePiece vocabularies of ``vocab_size`` pieces (each, when separate) learnt from the
    ``train`` split of ``bitext`` only (valid and test never shape the segmentation).

    ``joint=True`` learns one vocabulary from both languages' training text (needed for three-way
    and joint tying); ``joint=False`` one per language. ``cache_dir`` defaults to
    :func:`subword_cache_dir` (one cache for every corpus: a model is found by its inputs).
    """
    if vocab_size < 8:
        raise ValueError(f"vocab_size must be at least 8 (4 special pieces and some text), got {vocab_size}")
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    cache = Path(cache_dir) if cache_dir is not None else subword_cache_dir()
    options: dict[str, object] = {"vocab_size": vocab_size, "model_type": model_type}
    src, tgt = bitext.source("train"), bitext.target("train")
    if joint:
        proto = _train(src + tgt, options, cache)
        return Subwords(proto, proto)
    return Subwords(_train(src, options, cache), _train(tgt, options, cache))
