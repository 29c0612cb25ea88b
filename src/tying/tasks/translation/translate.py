"""Text in, text out: translate lines with a trained model and its subword vocabularies.

What a user-facing ``tying translate`` needs beyond decoding: empty (or blank) lines come back as
empty lines, so output line *i* always answers input line *i*; a line longer than the model can
read is cut to its first ``max_positions - 1`` subword tokens (plus ``</s>``) with a
:class:`TruncationWarning` that names the line, instead of failing the whole file.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from tying.tasks.translation.decoding import translate_ids
from tying.tasks.translation.subword import EOS_ID, Subwords

if TYPE_CHECKING:
    from tying.models.translation import TranslationTransformer

__all__ = ["TruncationWarning", "translate"]


class TruncationWarning(UserWarning):
    """An input line was longer than the model reads and was truncated."""


def translate(
    model: TranslationTransformer,
    subwords: Subwords,
    lines: list[str],
    *,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_length: int | None = None,
    max_tokens: int = 4096,
) -> list[str]:
    """Detokenised translations of ``lines``, one per line (``""`` for a blank line).

    ``beam_size``, ``length_penalty``, ``max_length``: see :func:`tying.tasks.translation.beam_search`;
    ``max_tokens``: padded source tokens per decoding batch.
    """
    limit = model.config.max_positions
    keep = [i for i, line in enumerate(lines) if line.strip()]
    source = subwords.encode_source([lines[i] for i in keep])
    for j, i in enumerate(keep):
        if len(source[j]) > limit:
            warnings.warn(
                f"line {i + 1}: {len(source[j]) - 1} subword tokens, more than the model reads "
                f"(max_positions={limit}); translating its first {limit - 1}",
                TruncationWarning,
                stacklevel=2,
            )
            source[j] = source[j][: limit - 1] + [EOS_ID]
    outputs = translate_ids(
        model, source, beam_size=beam_size, length_penalty=length_penalty, max_length=max_length, max_tokens=max_tokens
    )
    translations = [""] * len(lines)
    for i, text in zip(keep, subwords.decode_target(outputs), strict=True):
        translations[i] = text
    return translations
