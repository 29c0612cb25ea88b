r"""Word-level LSTM language model with optional input/output embedding tying.

The model reads token ids :math:`x_1 \dots x_T` and predicts each next token. With input
embedding :math:`U \in \mathbb{R}^{V \times d}` (row :math:`U_{x}` is word :math:`x`), output
embedding :math:`W \in \mathbb{R}^{V \times H}` and bias :math:`b`:

.. math::

    h_t, c_t = \mathrm{LSTM}_L\big(\mathrm{drop}(U_{x_t}),\ (h_{t-1}, c_{t-1})\big)

    p(x_{t+1} = w \mid x_{\le t}) = \mathrm{softmax}\big(W\, \mathrm{drop}(h_t) + b\big)_w
        \propto \exp\big(W_w^\top \mathrm{drop}(h_t) + b_w\big)

(Zaremba, Sutskever & Vinyals 2014, arXiv 1409.2329; L stacked layers, dropout on the
non-recurrent connections). **Weight tying** sets :math:`W = U`:
the output embedding of a word is its input embedding. Press & Wolf 2017 (arXiv 1608.05859)
show the output embedding is the better-trained of the two (every row gets a gradient at
every step, through the softmax normaliser, while an input row only gets one when its word
occurs) and that sharing it lowers perplexity while removing :math:`V \cdot d` parameters;
Inan, Khosravi & Socher 2017 (arXiv 1611.01462) derive the same tie from a loss that treats
words with similar embeddings as similar targets. Tying needs :math:`H = d`
(the hidden state is scored against the embeddings directly); a projection head lifting that
restriction is not here yet.

In the tied model the decoder's weight *is* the encoder's ``nn.Parameter``: one tensor, one
gradient (the sum of both uses), one optimizer entry, one entry in a :func:`tying.save`
checkpoint. The tie is the single line ``tying.tie(self, "encoder.weight", "decoder.weight")``.

Shapes are sequence-first, as ``nn.LSTM`` and :func:`tying.data.batchify`: tokens ``(T, B)``,
hidden ``(T, B, H)``, logits ``(T, B, V)``, state ``(h, c)`` each ``(L, B, H)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import tying
from tying.errors import TieError
from tying.nn import TiedOutput

__all__ = ["LSTMConfig", "LSTMLanguageModel", "LSTMState"]

#: ``(h, c)``, each ``(num_layers, batch, hidden_size)``.
LSTMState = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class LSTMConfig:
    """Sizes of an :class:`LSTMLanguageModel`.

    Attributes:
        vocab_size: V, rows of the input and output embeddings.
        embedding_size: d, width of the input embedding.
        hidden_size: H, width of each LSTM layer (and of the output embedding rows).
        num_layers: L, stacked LSTM layers.
        dropout: probability of zeroing an activation on the embedding output, between LSTM
            layers and on the last LSTM output (Zaremba et al.: non-recurrent connections only).
        tie: share the output embedding with the input embedding (needs ``hidden_size == embedding_size``).
        init_range: weights start uniform in ``[-init_range, init_range]``, biases at zero.
    """

    vocab_size: int
    embedding_size: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    dropout: float = 0.2
    tie: bool = False
    init_range: float = 0.1


class LSTMLanguageModel(nn.Module):
    """Embedding → dropout → ``num_layers``-layer LSTM → dropout → linear output layer.

    ``forward`` returns logits; :meth:`features` and :meth:`logits` are its two halves, so a loss
    can work from the hidden states without building the ``(T, B, V)`` logits (a fused output
    + cross-entropy head, regularisers on the output embedding).
    """

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        if config.tie and config.hidden_size != config.embedding_size:
            raise TieError(
                f"cannot tie the output layer to the embedding: hidden_size={config.hidden_size} but "
                f"embedding_size={config.embedding_size}; the decoder weight is (vocab, hidden) and the embedding "
                "(vocab, embedding), so set hidden_size == embedding_size (a projection head is not available yet)"
            )
        self.config = config
        self.encoder = nn.Embedding(config.vocab_size, config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = nn.LSTM(
            config.embedding_size,
            config.hidden_size,
            config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,  # between layers only; nn.LSTM warns otherwise
        )
        self.decoder = TiedOutput(config.hidden_size, config.vocab_size)  # an nn.Linear with a fused .loss
        if config.tie:
            tying.tie(self, "encoder.weight", "decoder.weight")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights uniform in ``[-init_range, init_range]`` (Zaremba et al.'s small model, pytorch
        examples), biases zero; a tied weight is drawn once, as the one tensor it is."""
        r = self.config.init_range
        for p in self.parameters():  # each shared Parameter once
            if p.dim() > 1:  # embedding, LSTM and decoder matrices
                nn.init.uniform_(p, -r, r)
            else:
                nn.init.zeros_(p)

    def init_state(self, batch_size: int) -> LSTMState:
        """Zero ``(h, c)`` for a batch, on the model's device and dtype."""
        w = self.decoder.bias
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        return w.new_zeros(shape), w.new_zeros(shape)

    def features(self, tokens: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """Hidden states ``(T, B, H)`` after the output dropout, and the state after the last step."""
        emb = self.drop(self.encoder(tokens))
        hidden, state = self.rnn(emb, state)
        return self.drop(hidden), state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Unnormalised next-token scores ``hidden @ decoder.weight.T + decoder.bias``."""
        return self.decoder(hidden)

    def forward(self, tokens: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """Logits ``(T, B, V)`` for token ids ``(T, B)``, and the state to carry to the next window."""
        hidden, state = self.features(tokens, state)
        return self.logits(hidden), state
