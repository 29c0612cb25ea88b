"""Where a model keeps its vocabulary size besides its parameters, by the conventions of
transformers (which models of any library follow; nothing here needs transformers installed):
vocabulary buffers found by name, and the ``vocab_size`` entries of ``model.config``."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

#: Buffers holding the vocabulary dimension, by name -> that dimension. Buffers tie to nothing, so
#: no tie group leads to them: the transformers seq2seq family (BART, mBART, Marian, Pegasus,
#: Blenderbot, ...) adds ``final_logits_bias`` of shape (1, V) to the logits outside any module.
VOCAB_BUFFERS: dict[str, int] = {"final_logits_bias": -1}

# Config entries holding the vocabulary size (Marian's ``decoder_vocab_size``: its output vocabulary,
# which its loss reads).
_CONFIG_KEYS = ("vocab_size", "decoder_vocab_size")


def vocab_config_entries(model: nn.Module, old_size: int) -> tuple[list[tuple[object, str]], list[nn.Module]]:
    """``(config, key)`` for each vocabulary size entry holding ``old_size`` in ``model.config`` and,
    where a composite transformers config keeps the vocabulary, its text sub-config (Llava's
    ``text_config``: what ``config.get_text_config()`` returns, as transformers'
    ``resize_token_embeddings`` updates); and the modules reading one of those configs whose own
    ``vocab_size`` attribute is ``old_size`` (transformers models copy it from their config)."""
    config = getattr(model, "config", None)
    if config is None:
        return [], []
    configs = [config]
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        try:
            text = get_text_config()
        except ValueError:  # several text sub-configs: transformers cannot tell either; the root's only
            text = config
        if text is not config:
            configs.append(text)
    entries = [(c, key) for c in configs for key in _CONFIG_KEYS if getattr(c, key, None) == old_size]
    readers = [
        m
        for m in model.modules()
        if any(getattr(m, "config", None) is c for c in configs) and getattr(m, "vocab_size", None) == old_size
    ]
    return entries, readers




def vocab_buffers(model: nn.Module, old_size: int) -> list[tuple[str, torch.Tensor, int]]:
    """``(path, buffer, vocabulary dimension)`` of each :data:`VOCAB_BUFFERS` buffer of ``model``
    whose vocabulary dimension has ``old_size``."""
    return [
        (name, buffer, vocab_dim % buffer.dim())
        for name, buffer in model.named_buffers()
        if (vocab_dim := VOCAB_BUFFERS.get(name.rpartition(".")[2])) is not None
        and buffer.dim() > 0
        and buffer.shape[vocab_dim] == old_size
    ]


def set_vocab_size(model: nn.Module, configs: list[tuple[object, str]], readers: list[nn.Module], new_size: int) -> None:
    """Write ``new_size`` into the entries and modules :func:`vocab_config_entries` found."""
    for config, key in configs:
        try:
            setattr(config, key, new_size)
        except dataclasses.FrozenInstanceError:  # a frozen dataclass: only ever ``model.config`` itself
            setattr(model, "config", dataclasses.replace(config, **{key: new_size}))  # type: ignore[type-var]
    for module in readers:
        setattr(module, "vocab_size", new_size)
