r"""Greedy and batched beam-search decoding of a :class:`tying.models.TranslationTransformer`.

Both run the encoder once per batch and then extend every hypothesis one token per step,
incrementally: the decoder's attention keys and values of the positions already read (and of
the memory) are kept in a :data:`~tying.models.translation.DecoderCache`, so each step computes
one new position (tests check it against re-reading the whole prefix).

*Greedy* search takes the most probable next token. *Beam search* keeps the ``beam_size`` best
prefixes per sentence by total log-probability; as in fairseq, each step looks at the best
``2 x beam_size`` extensions, sets aside those that end in ``</s>`` among the best
``beam_size`` as finished hypotheses, and continues with the best ``beam_size`` that do not. A
sentence is done when it has ``beam_size`` finished hypotheses; the answer is the finished one
with the highest score :math:`\log p(y \mid x) / \mathrm{lp}(y)`, with Wu et al.'s (2016,
arXiv 1609.08144) length penalty :math:`\mathrm{lp}(y) = ((5 + |y|) / 6)^{\alpha}`
(:math:`|y|` counts ``</s>``; :math:`\alpha = 0`: raw log-probabilities). At beam size 1 this is
exactly greedy search. ``<pad>`` and ``<s>`` are never produced, and a hypothesis reaching
``max_length`` tokens is ended with ``</s>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tying.models.translation import DecoderCache, TranslationTransformer

__all__ = ["greedy_search", "beam_search", "default_max_length", "translate_ids"]


def default_max_length(model: TranslationTransformer, src: torch.Tensor) -> int:
    """Output tokens allowed (``</s>`` not counted): ``1.5 S + 10`` for a longest source of S tokens,
    at most ``max_positions - 1`` (the decoder also reads ``<s>``)."""
    return min(model.config.max_positions - 1, int(1.5 * src.shape[1]) + 10)


def _check(model: TranslationTransformer, max_length: int) -> None:
    if not 0 <= max_length < model.config.max_positions:
        raise ValueError(f"max_length must be in [0, {model.config.max_positions - 1}] (max_positions - 1), got {max_length}")


def _next_log_probs(
    model: TranslationTransformer, token: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, cache: DecoderCache, last: bool
) -> torch.Tensor:
    """``(N, V)`` log-probabilities of the token after each prefix, whose last token is ``token``
    ``(N, 1)`` and the rest in ``cache``; ``</s>`` only, when ``last``."""
    c = model.config
    logits = model.logits(model.decode(token, memory, mask, cache)[:, -1]).float()
    if last:
        out = torch.full_like(logits, float("-inf"))
        out[:, c.eos_id] = 0.0
        return out
    logits[:, [c.pad_id, c.bos_id]] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def _until_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


@torch.no_grad()
def greedy_search(model: TranslationTransformer, src: torch.Tensor, max_length: int | None = None) -> list[list[int]]:
    """The most probable next token at every step, for each source row of ``src`` ``(B, S)``;
    returns the output ids of each sentence without ``<s>``/``</s>``."""
    c = model.config
    max_length = default_max_length(model, src) if max_length is None else max_length
    _check(model, max_length)
    memory, mask = model.encode(src)
    cache = model.new_cache()
    tokens = src.new_full((src.shape[0], 1), c.bos_id)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for step in range(max_length + 1):
        nxt = _next_log_probs(model, tokens[:, -1:], memory, mask, cache, step == max_length).argmax(dim=-1)
        nxt = nxt.masked_fill(done, c.pad_id)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == c.eos_id
        if bool(done.all()):
            break
    return [_until_eos(row, c.eos_id) for row in tokens[:, 1:].tolist()]


@torch.no_grad()
def beam_search(
    model: TranslationTransformer,
    src: torch.Tensor,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_length: int | None = None,
) -> list[list[int]]:
    """Beam search (module docstring) for each source row of ``src`` ``(B, S)``, all sentences
    and beams in one batch of ``B x beam_size`` rows; returns the best output ids per sentence
    without ``<s>``/``</s>``."""
    c = model.config
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    max_length = default_max_length(model, src) if max_length is None else max_length
    _check(model, max_length)
    n, k = src.shape[0], beam_size
    memory, mask = model.encode(src)
    memory, mask = memory.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0)
    cache = model.new_cache()
    tokens = src.new_full((n * k, 1), c.bos_id)
    scores = torch.zeros(n, k, device=src.device)
    scores[:, 1:] = float("-inf")  # the k beams start as one hypothesis, <s>
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    offsets = torch.arange(n, device=src.device)[:, None] * k
    for step in range(max_length + 1):
        log_probs = _next_log_probs(model, tokens[:, -1:], memory, mask, cache, step == max_length)
        vocab = log_probs.shape[1]
        top, flat = (scores.reshape(-1, 1) + log_probs).view(n, k * vocab).topk(min(2 * k, k * vocab), dim=1)
        beam, token = flat // vocab, flat % vocab
        ends = token == c.eos_id
        # Hypotheses ending among the best k are finished (rows of done sentences are skipped).
        for b, j in ((ends[:, :k] & (top[:, :k] > float("-inf"))).nonzero().tolist()):
            if len(finished[b]) < k:
                output = tokens[b * k + beam[b, j], 1:].tolist()
                finished[b].append((top[b, j].item() / ((5 + len(output) + 1) / 6) ** length_penalty, output))
        if all(len(f) >= k for f in finished):
            break
        # The best k that go on; among 2k extensions at most k end (one per beam), so k remain.
        scores, pick = top.masked_fill(ends, float("-inf")).topk(k, dim=1)
        rows = (offsets + beam.gather(1, pick)).view(-1)
        tokens = torch.cat([tokens[rows], token.gather(1, pick).view(-1, 1)], dim=1)
        for layer in cache:  # the cross-attention cache needs no reordering: a sentence's beams share one memory
            layer["self"] = {name: t[rows] for name, t in layer["self"].items()}
    return [max(f, key=lambda scored: scored[0])[1] for f in finished]


@torch.no_grad()
def translate_ids(
    model: TranslationTransformer,
    source: list[list[int]],
    *,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_length: int | None = None,
    max_tokens: int = 4096,
) -> list[list[int]]:
    """Output ids for each source id list (``</s>``-terminated), in input order: the sources are
    batched by length (:func:`tying.tasks.translation.token_batches`, ``max_tokens`` per batch) and decoded
    in eval mode with :func:`beam_search` (:func:`greedy_search` at ``beam_size=1``, the same result)."""
    from tying.tasks.translation.batches import token_batches

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out: list[list[int]] = [[] for _ in source]
        for batch in token_batches(source, max_tokens=max_tokens, max_length=model.config.max_positions):
            src = batch.src.to(device)
            if beam_size == 1:
                hyps = greedy_search(model, src, max_length)
            else:
                hyps = beam_search(model, src, beam_size, length_penalty, max_length)
            for i, hyp in zip(batch.index.tolist(), hyps, strict=True):
                out[i] = hyp
        return out
    finally:
        model.train(was_training)
