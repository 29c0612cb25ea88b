r"""Transformer encoder-decoder for translation, with decoder, three-way or joint input-output
embedding tying.

A source sentence :math:`x_1 \dots x_S` (ending in ``<eos>``) is embedded,
:math:`h^0_s = \sqrt{d}\,S_{x_s} + P_s` (source embedding :math:`S`, sinusoidal or learned
positions :math:`P`), and encoded by :math:`L_e` pre-norm blocks,
:math:`h \leftarrow h + \mathrm{SelfAttn}(\mathrm{LN}(h))`, :math:`h \leftarrow h + \mathrm{FFN}(\mathrm{LN}(h))`,
into the memory :math:`m = \mathrm{LN}(h^{L_e})`. The decoder reads the target prefix
``<bos>`` :math:`y_1 \dots y_{t-1}` embedded by the target embedding :math:`E` the same way, and
each of its :math:`L_d` blocks adds causal self-attention, cross-attention to :math:`m` (padding
masked) and an FFN (Vaswani et al. 2017, arXiv 1706.03762; pre-norm as in Xiong et al. 2020,
arXiv 2002.04745). The final state :math:`h_t` scores the next word,
:math:`p(y_t \mid y_{<t}, x) = \mathrm{softmax}(z_t)` with, by ``tie`` mode:

* ``"none"``: :math:`z_t = W h_t + b`, three separate matrices :math:`S`, :math:`E`, :math:`W`;
* ``"decoder"``: :math:`W = E` (Press & Wolf 2017, arXiv 1608.05859; the target embedding is the
  output layer);
* ``"three_way"``: :math:`S = E = W`, which needs one vocabulary for both languages (Press &
  Wolf's three-way tying; fairseq ``--share-all-embeddings``, T5, Marian);
* ``"joint"``: :math:`S = E` and Pappas et al.'s joint input-output embedding on top of the tied
  :math:`E`, :math:`z_t = g(E U + b_u)\, g(V h_t + b_v)^\top + b`
  (arXiv 1808.10681; :class:`tying.nn.JointOutput`, joint size and :math:`g` configurable).

Each tie is one visible ``tying.tie`` line in ``__init__``, so it is in the model's spec and
survives :func:`tying.save` / :func:`tying.load`, :func:`tying.materialize`, ``torch.compile``
and :func:`tying.distributed.fully_shard_tied`. The output layer is a
:class:`tying.nn.TiedOutput` (its subclass :class:`~tying.nn.JointOutput` for ``"joint"``): :meth:`TranslationTransformer.loss`
computes the label-smoothed cross-entropy (Szegedy et al. 2016) through its fused head, without the
``(B, T, V)`` logits in memory.

Shapes are batch-first: source ids ``(B, S)``, target ids ``(B, T)``, padded with ``pad_id`` on the
right; memory ``(B, S, d)``, decoder states ``(B, T, d)``, logits ``(B, T, V)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from tying.constraints import Range, check_ranges
from tying.core import tie
from tying.nn import JointActivation, JointOutput, TiedOutput

__all__ = ["DecoderCache", "TieMode", "TranslationConfig", "TranslationTransformer", "sinusoidal_positions"]

TieMode = Literal["none", "decoder", "three_way", "joint"]
#: Per decoder layer, the attention keys and values computed so far (``"self"``: of the target
#: positions read, ``"cross"``: of the memory), each ``{"k": (B, heads, T, d/heads), "v": ...}``.
DecoderCache = list[dict[str, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class TranslationConfig:
    """Sizes, tying mode and regularisers of a :class:`TranslationTransformer`.

    Attributes:
        src_vocab_size: rows of the source embedding.
        tgt_vocab_size: rows of the target embedding and of the output layer.
        tie: ``"none"``, ``"decoder"``, ``"three_way"`` or ``"joint"`` (module docstring);
            ``"three_way"`` and ``"joint"`` need ``src_vocab_size == tgt_vocab_size`` (one joint vocabulary).
        embedding_size: d, the width of embeddings and of every block.
        num_heads: attention heads (must divide ``embedding_size``).
        encoder_layers, decoder_layers: stacked blocks.
        ffn_size: inner width of each block's feed-forward network (ReLU).
        dropout: on the embeddings and on every residual branch.
        attention_dropout: on the attention weights.
        activation_dropout: on the FFN's inner activations (fairseq's defaults: 0 for both, the
            extra dropout masks cost about a tenth of a training step on CPU).
        positions: ``"sinusoidal"`` (fixed, Vaswani et al.) or ``"learned"`` (one table per side).
        max_positions: the longest source or target sequence, ``<bos>``/``<eos>`` included.
        joint_size: joint space width j of ``tie="joint"`` (default ``embedding_size``).
        joint_activation: g of ``tie="joint"``.
        label_smoothing: epsilon of the training loss.
        pad_id, bos_id, eos_id: special token ids (those of :mod:`tying.tasks.translation.subword` by default).
    """

    src_vocab_size: Annotated[int, Range(ge=1)]
    tgt_vocab_size: Annotated[int, Range(ge=1)]
    tie: TieMode = "three_way"
    embedding_size: Annotated[int, Range(ge=2)] = 256
    num_heads: Annotated[int, Range(ge=1)] = 4
    encoder_layers: Annotated[int, Range(ge=1)] = 3
    decoder_layers: Annotated[int, Range(ge=1)] = 3
    ffn_size: Annotated[int, Range(ge=1)] = 1024
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1
    attention_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    activation_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_positions: Annotated[int, Range(ge=2)] = 256
    joint_size: Annotated[int | None, Range(ge=1)] = None
    joint_activation: JointActivation = "tanh"
    label_smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.1
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.tie not in get_args(TieMode):
            raise ValueError(f"tie must be one of {list(get_args(TieMode))}, got {self.tie!r}")
        if self.tie in ("three_way", "joint") and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                f"tie={self.tie!r} shares the source and target embeddings and needs one joint vocabulary, but "
                f"src_vocab_size={self.src_vocab_size} != tgt_vocab_size={self.tgt_vocab_size}"
            )
        if self.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be 'sinusoidal' or 'learned', got {self.positions!r}")
        if self.embedding_size % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} does not divide embedding_size={self.embedding_size}")
        if self.positions == "sinusoidal" and self.embedding_size % 2:
            raise ValueError(f"sinusoidal positions need an even embedding_size, got {self.embedding_size}")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, i in ids.items():
            if not 0 <= i < min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(f"{name}={i} is not a token id of the vocabularies ({self.src_vocab_size}, {self.tgt_vocab_size})")
        if len(set(ids.values())) < 3:
            raise ValueError(f"pad_id, bos_id and eos_id must differ, got {ids}")


def sinusoidal_positions(length: int, size: int) -> torch.Tensor:
    r"""``(length, size)`` table :math:`P_{t,2i} = \sin(t / 10000^{2i/d})`,
    :math:`P_{t,2i+1} = \cos(t / 10000^{2i/d})` (Vaswani et al. 2017)."""
    t = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * (-math.log(10000.0) / size))
    table = torch.empty(length, size)
    table[:, 0::2], table[:, 1::2] = torch.sin(t * freq), torch.cos(t * freq)
    return table


class Attention(nn.Module):
    """Multi-head attention; self-attention (one packed q/k/v projection) when ``memory`` is None,
    else cross-attention from ``x`` to ``memory`` (the same parameters as ``nn.MultiheadAttention``)."""

    def __init__(self, size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.in_proj = nn.Linear(size, 3 * size)  # rows: q, k, v
        self.out_proj = nn.Linear(size, size)

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` -> ``(B, heads, T, d / heads)``."""
        return z.unflatten(2, (self.num_heads, -1)).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``mask``: ``(B, 1, 1, S)`` booleans, True where a key may be attended to. ``cache``
        (incremental decoding) holds the keys and values computed so far: self-attention appends
        those of ``x``, cross-attention computes those of ``memory`` once."""
        b, t, d = x.shape
        w, bias = self.in_proj.weight, self.in_proj.bias
        if memory is None:
            q, k, v = map(self._heads, self.in_proj(x).split(d, dim=2))
            if cache is not None:
                if "k" in cache:
                    k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        else:
            q = self._heads(F.linear(x, w[:d], bias[:d]))
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]
            else:
                k, v = map(self._heads, F.linear(memory, w[d:], bias[d:]).split(d, dim=2))
                if cache is not None:
                    cache["k"], cache["v"] = k, v
        if causal and t > 1 and k.shape[2] != t:
            raise ValueError(f"incremental decoding takes one position at a time after the first call, got {t}")
        p = self.dropout if self.training else 0.0
        # One new query after the cached keys may attend to all of them: causal only when square.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal and t > 1)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """``Linear(d, f)`` → ReLU → dropout → ``Linear(f, d)``."""

    def __init__(self, size: int, ffn_size: int, dropout: float) -> None:
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(size, ffn_size), nn.Linear(ffn_size, size), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Pre-norm block: self-attention over the (unpadded) source, then the FFN."""

    def __init__(self, c: TranslationConfig) -> None:
        super().__init__()
        self.ln_attn, self.attn = nn.LayerNorm(c.embedding_size), Attention(c.embedding_size, c.num_heads, c.attention_dropout)
        self.ln_ffn, self.ffn = nn.LayerNorm(c.embedding_size), FeedForward(c.embedding_size, c.ffn_size, c.activation_dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_attn(x), mask=mask))
        return x + self.drop(self.ffn(self.ln_ffn(x)))


class DecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the memory, then the FFN.
    Targets are padded on the right, so the causal mask alone keeps real positions off the padding."""

    def __init__(self, c: TranslationConfig) -> None:
        super().__init__()
        d = c.embedding_size
        self.ln_self, self.self_attn = nn.LayerNorm(d), Attention(d, c.num_heads, c.attention_dropout)
        self.ln_cross, self.cross_attn = nn.LayerNorm(d), Attention(d, c.num_heads, c.attention_dropout)
        self.ln_ffn, self.ffn = nn.LayerNorm(d), FeedForward(d, c.ffn_size, c.activation_dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, cache: dict[str, dict[str, torch.Tensor]] | None = None
    ) -> torch.Tensor:
        x = x + self.drop(self.self_attn(self.ln_self(x), causal=True, cache=None if cache is None else cache["self"]))
        x = x + self.drop(self.cross_attn(self.ln_cross(x), memory, memory_mask, cache=None if cache is None else cache["cross"]))
        return x + self.drop(self.ffn(self.ln_ffn(x)))


class TranslationTransformer(nn.Module):
    """Source/target embeddings → encoder and decoder stacks → (tied) output layer.

    :meth:`encode` and :meth:`decode` are the two halves of ``forward``, so decoding runs the
    encoder once per batch, and :meth:`loss` works from the decoder states through the fused head.
    """

    sinusoids: torch.Tensor  # the fixed position table (a buffer), with positions="sinusoidal"

    def __init__(self, config: TranslationConfig) -> None:
        super().__init__()
        c = self.config = config
        d = c.embedding_size
        self.src_embed = nn.Embedding(c.src_vocab_size, d)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, d)
        self.src_pos: nn.Embedding | None = None
        self.tgt_pos: nn.Embedding | None = None
        if c.positions == "learned":
            self.src_pos, self.tgt_pos = nn.Embedding(c.max_positions, d), nn.Embedding(c.max_positions, d)
        else:  # fixed: a buffer, not saved (recomputed from the config)
            self.register_buffer("sinusoids", sinusoidal_positions(c.max_positions, d), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        if c.tie == "joint":
            self.output: TiedOutput = JointOutput(d, c.tgt_vocab_size, c.joint_size or d, activation=c.joint_activation)
        else:
            self.output = TiedOutput(d, c.tgt_vocab_size)
        if c.tie == "decoder":
            tie(self, "tgt_embed.weight", "output.weight")
        elif c.tie in ("three_way", "joint"):
            tie(self, "tgt_embed.weight", "src_embed.weight", "output.weight")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Embeddings (and learned positions) normal(0, d^-1/2), scaled by sqrt(d) when read, as
        fairseq's tied Transformers; other matrices Xavier-uniform (as ``nn.Transformer``); biases
        zero; layer norms identity. A tied weight is drawn once, as the one tensor it is."""
        d = self.config.embedding_size
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)} | {id(self.output.weight)}
        norms = {id(m.weight) for m in self.modules() if isinstance(m, nn.LayerNorm)}
        for p in self.parameters():  # each shared Parameter once
            if id(p) in embeddings:
                nn.init.normal_(p, 0.0, d**-0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif id(p) in norms:
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def _embed(self, tokens: torch.Tensor, table: nn.Embedding, positions: nn.Embedding | None, offset: int = 0) -> torch.Tensor:
        end = offset + tokens.shape[1]
        if end > self.config.max_positions:
            raise ValueError(f"sequence of {end} tokens is longer than max_positions={self.config.max_positions}")
        pos = self.sinusoids[offset:end] if positions is None else positions.weight[offset:end]
        return self.drop(table(tokens) * math.sqrt(self.config.embedding_size) + pos)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory ``(B, S, d)`` and its attention mask ``(B, 1, 1, S)`` (True at real tokens)
        for source ids ``(B, S)``."""
        mask = (src != self.config.pad_id)[:, None, None, :]
        x = self._embed(src, self.src_embed, self.src_pos)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x), mask

    def new_cache(self) -> DecoderCache:
        """An empty :data:`DecoderCache` for incremental :meth:`decode`."""
        return [{"self": {}, "cross": {}} for _ in self.decoder]

    def decode(
        self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, cache: DecoderCache | None = None
    ) -> torch.Tensor:
        """Decoder states ``(B, T, d)`` after the final layer norm; position t has read ``tgt_in[:, :t+1]``.

        With a ``cache`` (from :meth:`new_cache`), ``tgt_in`` continues the positions already in
        it, one token per call after the first, and the cache is extended: the incremental
        decoding of search, which computes each position once instead of re-reading the prefix."""
        offset = cache[0]["self"]["k"].shape[2] if cache and "k" in cache[0]["self"] else 0
        x = self._embed(tgt_in, self.tgt_embed, self.tgt_pos, offset)
        for i, layer in enumerate(self.decoder):
            x = layer(x, memory, memory_mask, None if cache is None else cache[i])
        return self.decoder_norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Unnormalised next-word scores ``(..., V)`` of decoder states ``(..., d)``."""
        return self.output(hidden)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, V)``: position t scores the target word after ``tgt_in[:, :t+1]``."""
        return self.logits(self.decode(tgt_in, *self.encode(src)))

    def loss(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        tgt_out: torch.Tensor,
        *,
        reduction: Literal["mean", "sum"] = "mean",
        label_smoothing: float | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of ``tgt_out`` given ``tgt_in``, label-smoothed by ``label_smoothing``
        (default ``config.label_smoothing``; 0 for the plain negative log-likelihood), padding
        ignored, through the output layer's fused head; ``"mean"`` averages over the real target tokens."""
        smoothing = self.config.label_smoothing if label_smoothing is None else label_smoothing
        hidden = self.decode(tgt_in, *self.encode(src))
        return self.output.loss(hidden, tgt_out, ignore_index=self.config.pad_id, reduction=reduction, label_smoothing=smoothing)
