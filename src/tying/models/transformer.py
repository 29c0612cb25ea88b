r"""Decoder-only Transformer language model (GPT-2 / nanoGPT layout) with optional input/output
embedding tying.

Token ids :math:`x_1 \dots x_T` are embedded, :math:`h^0_t = U_{x_t} + P_t` (token embedding
:math:`U \in \mathbb{R}^{V \times d}`, learned positions :math:`P`), passed through :math:`L`
pre-norm blocks

.. math::

    h \leftarrow h + \mathrm{Attn}(\mathrm{LN}(h)), \qquad h \leftarrow h + \mathrm{MLP}(\mathrm{LN}(h))

with causal multi-head self-attention and a GELU MLP of width :math:`4d` (Radford et al. 2019,
GPT-2), and scored against the output embedding: :math:`z_t = W\,\mathrm{LN}(h^L_t)`.
**Weight tying** sets :math:`W = U` (Press & Wolf 2017, arXiv 1608.05859), as GPT-2 and nanoGPT
do; the tie is the single line ``tying.tie(self, "wte.weight", "lm_head.weight")``, so the spec
travels with the model into :func:`tying.save`, :func:`tying.materialize` and
:func:`tying.distributed.fully_shard_tied` (the blocks are a ``ModuleList``: one FSDP unit each,
the tied embedding and head one more).

**Cross-layer sharing** (``share_unique = M``) makes the :math:`L` blocks use :math:`M` unique
parameter sets by ``share_strategy`` (``sequence`` AABBCC, ``cycle`` ABCABC, ``cycle_rev`` ABCCBA,
``all`` one set; Takase & Kiyono 2021, arXiv 2104.06022; ALBERT, Lan et al. 2020), declared by the
single line ``tying.share_layers(self, "blocks", ...)`` (:mod:`tying.sharing`), so the sharing
is a set of ordinary ties in the spec and a checkpoint stores each set once.

Shapes are batch-first: tokens ``(B, T)`` with ``T <= context_size``, hidden ``(B, T, d)``,
logits ``(B, T, V)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tying.constraints import Range, check_ranges
from tying.core import tie
from tying.nn import TiedOutput
from tying.sharing import layer_assignment, share_layers

__all__ = ["TransformerConfig", "TransformerLanguageModel"]


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of a :class:`TransformerLanguageModel`.

    Attributes:
        vocab_size: V, rows of the token embedding and of the output layer.
        context_size: the longest sequence (rows of the position embedding).
        embedding_size: d, the width of every block.
        num_layers: L, stacked blocks.
        num_heads: attention heads per block (must divide ``embedding_size``).
        dropout: probability of zeroing an activation (embeddings, attention weights, residual branches).
        bias: biases in the linear layers and layer norms.
        tie: share the output layer's weight with the token embedding.
        init_std: weights start normal with this standard deviation (residual output projections
            with ``init_std / sqrt(2 L)``, GPT-2), biases at zero.
        share_unique: M, the number of unique parameter sets the blocks use (None: every block
            its own, as ``M = L``).
        share_strategy: which blocks share a set (:func:`tying.layer_assignment`).
        share_norms: the blocks' layer norms are shared with the rest of their set (as in the
            paper); False leaves them per block.
    """

    vocab_size: Annotated[int, Range(ge=1)]
    context_size: Annotated[int, Range(ge=1)] = 256
    embedding_size: Annotated[int, Range(ge=1)] = 128
    num_layers: Annotated[int, Range(ge=1)] = 4
    num_heads: Annotated[int, Range(ge=1)] = 4
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    bias: bool = True
    tie: bool = True
    init_std: Annotated[float, Range(gt=0)] = 0.02
    share_unique: Annotated[int | None, Range(ge=1)] = None
    share_strategy: Literal["sequence", "cycle", "cycle_rev", "all"] = "cycle_rev"
    share_norms: bool = True

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.share_unique is not None:  # the rules of tying.layer_assignment (TieError naming them)
            layer_assignment(self.num_layers, self.share_unique, self.share_strategy)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``t`` attends to positions ``<= t``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.embedding_size % config.num_heads:
            raise ValueError(f"num_heads={config.num_heads} does not divide embedding_size={config.embedding_size}")
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.embedding_size, 3 * config.embedding_size, bias=config.bias)
        self.proj = nn.Linear(config.embedding_size, config.embedding_size, bias=config.bias)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2) for z in self.qkv(x).split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class MLP(nn.Module):
    """``Linear(d, 4d)`` → GELU → ``Linear(4d, d)`` → dropout."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.embedding_size, 4 * config.embedding_size, bias=config.bias)
        self.proj = nn.Linear(4 * config.embedding_size, config.embedding_size, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: attention, then MLP."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.embedding_size, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.embedding_size, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TransformerLanguageModel(nn.Module):
    """Token + position embedding → ``num_layers`` blocks → layer norm → output layer.

    ``forward`` returns logits; :meth:`features` and :meth:`logits` are its two halves, so a loss
    can work from the hidden states (``self.lm_head.loss(hidden, targets)``, the fused head of
    :class:`tying.nn.TiedOutput`) without building the ``(B, T, V)`` logits.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.embedding_size)
        self.wpe = nn.Embedding(config.context_size, config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.embedding_size, bias=config.bias)
        self.lm_head = TiedOutput(config.embedding_size, config.vocab_size, bias=False)
        if config.tie:
            tie(self, "wte.weight", "lm_head.weight")
        if config.share_unique is not None:
            share_layers(self, "blocks", unique=config.share_unique, strategy=config.share_strategy, share_norms=config.share_norms)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: weight matrices normal(0, ``init_std``), the two residual output
        projections of each block scaled by :math:`1/\\sqrt{2L}`, biases zero, layer norms
        identity; a tied weight is drawn once, as the one tensor it is."""
        std = self.config.init_std
        norm_weights = {id(m.weight) for m in self.modules() if isinstance(m, nn.LayerNorm)}
        for name, p in self.named_parameters():  # each shared Parameter once
            if name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.num_layers))
            elif p.dim() > 1:
                nn.init.normal_(p, 0.0, std)
            elif id(p) in norm_weights:
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, T, d)`` after the final layer norm, for token ids ``(B, T)``."""
        t = tokens.shape[1]
        if t > self.config.context_size:
            raise ValueError(f"sequence of {t} tokens is longer than context_size={self.config.context_size}")
        x = self.drop(self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device)))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Unnormalised next-token scores ``hidden @ lm_head.weight.T``."""
        return self.lm_head(hidden)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, V)``: position ``t`` scores the token at ``t + 1``."""
        return self.logits(self.features(tokens))
