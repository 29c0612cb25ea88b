"""Self-contained translation checkpoints: the model's configuration and its subword models
travel in the safetensors header, so one file translates (``tying translate FILE``).

The header of a file written by :func:`tying.save` with ``metadata=checkpoint_metadata(...)``
holds, beside the weights and the tie spec:

* ``"tying.translation"``: JSON of the :class:`tying.models.TranslationConfig`;
* ``"tying.translation.source_spm"``: the serialized SentencePiece source model, base64;
* ``"tying.translation.target_spm"``: the target model, base64 (only when the vocabularies are
  separate; a joint vocabulary is stored once).

The translation task's checkpoints (``tying train`` / ``tying compare``) carry these entries;
:func:`load_translator` rebuilds the model and its tokenizers from a checkpoint file or a run
folder, and names what is wrong with anything else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
from pathlib import Path

import tying
from tying.tasks.translation.subword import Subwords
from tying.errors import CheckpointError
from tying.models.translation import TranslationConfig, TranslationTransformer

__all__ = ["CONFIG_KEY", "SOURCE_KEY", "TARGET_KEY", "checkpoint_metadata", "find_checkpoint", "load_translator"]

CONFIG_KEY = "tying.translation"
SOURCE_KEY = "tying.translation.source_spm"
TARGET_KEY = "tying.translation.target_spm"


def checkpoint_metadata(config: TranslationConfig, subwords: Subwords) -> dict[str, str]:
    """Header entries (module docstring) that make a checkpoint of a model of ``config`` with
    tokenizers ``subwords`` usable on its own."""
    meta = {CONFIG_KEY: json.dumps(dataclasses.asdict(config)), SOURCE_KEY: base64.b64encode(subwords.source_proto).decode()}
    if not subwords.joint:
        meta[TARGET_KEY] = base64.b64encode(subwords.target_proto).decode()
    return meta


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it is a file; for a run folder its ``best.safetensors`` (the model of the
    best validation epoch), else its latest ``model-epoch*.safetensors``."""
    path = Path(path)
    if path.is_dir():
        best = path / "best.safetensors"
        epochs = sorted(path.glob("model-epoch*.safetensors"))
        if best.is_file():
            return best
        if epochs:
            return epochs[-1]
        raise CheckpointError(f"run folder {str(path)!r} holds no checkpoint (best.safetensors or model-epoch*.safetensors)")
    if not path.exists():
        raise CheckpointError(f"no such checkpoint file or run folder: {str(path)!r}")
    return path


def _proto(meta: dict[str, str], key: str, file: Path) -> bytes:
    try:
        return base64.b64decode(meta[key], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"{str(file)!r}: metadata {key!r} is not a base64 SentencePiece model ({exc})") from None


def load_translator(path: str | os.PathLike[str]) -> tuple[TranslationTransformer, Subwords]:
    """The model and subword vocabularies of a translation checkpoint (a file, or a run folder:
    :func:`find_checkpoint`), the model in eval mode.

    Raises:
        CheckpointError: not a safetensors file, not a translation model (no ``"tying.translation"``
            entry), no subword model, or weights that do not fit the stored configuration.
    """
    file = find_checkpoint(path)
    meta = tying.read_checkpoint(file).metadata
    if CONFIG_KEY not in meta:
        raise CheckpointError(
            f"{str(file)!r} is not a translation model checkpoint: its header has no {CONFIG_KEY!r} entry "
            "(tying translate reads the checkpoints of the translation task: tying train / tying compare)"
        )
    try:
        config = TranslationConfig(**json.loads(meta[CONFIG_KEY]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{str(file)!r}: metadata {CONFIG_KEY!r} is not a valid translation model configuration ({exc})") from None
    if SOURCE_KEY not in meta:
        raise CheckpointError(
            f"{str(file)!r} holds a translation model but not its tokenizer: the header has no subword model ({SOURCE_KEY!r})"
        )
    source = _proto(meta, SOURCE_KEY, file)
    target = _proto(meta, TARGET_KEY, file) if TARGET_KEY in meta else source
    try:
        subwords = Subwords(source, target)
    except RuntimeError as exc:  # SentencePiece's parse error
        raise CheckpointError(f"{str(file)!r}: its subword model cannot be read by SentencePiece ({exc})") from None
    if (subwords.source_size, subwords.target_size) != (config.src_vocab_size, config.tgt_vocab_size):
        raise CheckpointError(
            f"{str(file)!r}: the subword models have {subwords.source_size}/{subwords.target_size} pieces but the model "
            f"{config.src_vocab_size}/{config.tgt_vocab_size} vocabulary rows"
        )
    model = TranslationTransformer(config)
    tying.load(model, file)
    return model.eval(), subwords
