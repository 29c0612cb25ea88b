r"""Word-level LSTM language model with optional input/output embedding tying.

The model reads token ids :math:`x_1 \dots x_T` and predicts each next token. With input
embedding :math:`U \in \mathbb{R}^{V \times d}` (row :math:`U_{x}` is word :math:`x`), output
embedding :math:`W \in \mathbb{R}^{V \times d_o}` and bias :math:`b`:

.. math::

    h_t = \mathrm{LSTM}_L\big(\mathrm{drop}(U_{x_t}),\ \text{state}_{t-1}\big), \qquad
    o_t = P\,\mathrm{drop}(h_t) + c \ \ (\text{optional projection; else } o_t = \mathrm{drop}(h_t))

    p(x_{t+1} = w \mid x_{\le t}) = \mathrm{softmax}(W o_t + b)_w

(Zaremba, Sutskever & Vinyals 2014, arXiv 1409.2329; L stacked layers, dropout on the
non-recurrent connections). **Weight tying** sets :math:`W = U`: the output embedding of a word is
its input embedding. Press & Wolf 2017 (arXiv 1608.05859) show the output embedding is the
better-trained of the two and that sharing it lowers perplexity while removing :math:`V d`
parameters; Inan, Khosravi & Socher 2017 (arXiv 1611.01462) derive the same tie from a loss that
treats words with similar embeddings as similar targets.

Tying needs the vector scored against the embeddings to have the embedding's width :math:`d`.
Three ways to get it, all configurable here:

* ``hidden_size == embedding_size`` (the classic setting);
* ``projection=True``: a learned :math:`P \in \mathbb{R}^{d \times H}` with bias before the output
  layer. With :math:`H = d` this is Press & Wolf's *projection regularization* model (add
  :math:`\lambda \lVert P \rVert^2` to the loss: :func:`tying.tasks.lm.projection_penalty`);
* ``last_layer_size=embedding_size``: the last LSTM layer outputs :math:`d` units directly
  (AWD-LSTM, Merity et al. 2018, arXiv 1708.02182: 1150 hidden, 400 embedding).

Regularisers from AWD-LSTM are options: *variational* (locked) dropout, one mask per sequence
reused at every time step (Gal & Ghahramani 2016, arXiv 1512.05287), and *embedding dropout*,
which drops whole words from the embedding matrix for the input lookup (the tied output layer
still scores every word).

In the tied model the decoder's weight *is* the encoder's ``nn.Parameter``: one tensor, one
gradient (the sum of both uses), one optimizer entry, one entry in a :func:`tying.save`
checkpoint. The tie is the single line ``tying.tie(self, "encoder.weight", "decoder.weight")``.

Shapes are sequence-first: tokens ``(T, B)``, features ``(T, B, d_o)``, logits ``(T, B, V)``;
the recurrent state is one ``(h, c)`` pair per layer, each ``(1, B, H_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from tying.constraints import Range, check_ranges
from tying.core import tie
from tying.errors import TieError
from tying.nn import LockedDropout, TiedOutput, embedding_dropout

__all__ = ["LSTMConfig", "LSTMLanguageModel", "LSTMState"]

#: One ``(h, c)`` pair per layer, each ``(1, batch, size of that layer)``.
LSTMState = tuple[tuple[torch.Tensor, torch.Tensor], ...]


@dataclass(frozen=True)
class LSTMConfig:
    """Sizes and regularisers of an :class:`LSTMLanguageModel`.

    Attributes:
        vocab_size: V, rows of the input and output embeddings.
        embedding_size: d, width of the input embedding.
        hidden_size: H, width of each LSTM layer (but the last, see ``last_layer_size``).
        num_layers: L, stacked LSTM layers.
        dropout: probability of zeroing an activation between LSTM layers and on the last LSTM
            output (Zaremba et al.: non-recurrent connections only).
        tie: share the output embedding with the input embedding (needs the output layer's input
            width, :attr:`output_features`, to equal ``embedding_size``).
        init_range: weights start uniform in ``[-init_range, init_range]``, biases at zero.
        uniform_output_biases: the output bias :math:`b` and the projection bias :math:`c` start
            uniform in ``[-init_range, init_range]`` too: how Zaremba et al.'s and Press & Wolf's
            TensorFlow code initialises them (variables created without an initializer take the
            scope's uniform one; its LSTM biases start at zero, as here).
        projection: a learned linear map (with bias) from the last LSTM output to ``embedding_size``
            before the output layer.
        projection_bias: whether the projection has its bias :math:`c`. Press & Wolf's model has
            it; through a tied output layer it is a second output bias :math:`Wc` whose gradient
            moves the logits by :math:`WW^\top g`, the cause of the projection models' slow start
            at a high learning rate (docs/RESULTS.md, ablation).
        last_layer_size: width of the last LSTM layer (AWD-LSTM sets it to ``embedding_size``);
            None: ``hidden_size``.
        input_dropout: dropout on the embedding output; None: ``dropout``.
        embedding_dropout: probability of dropping a word's whole embedding row in the input lookup.
        variational: one dropout mask per sequence, shared across time steps (locked dropout).
    """

    vocab_size: Annotated[int, Range(ge=1)]
    embedding_size: Annotated[int, Range(ge=1)] = 200
    hidden_size: Annotated[int, Range(ge=1)] = 200
    num_layers: Annotated[int, Range(ge=1)] = 2
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.2
    tie: bool = False
    init_range: Annotated[float, Range(gt=0)] = 0.1
    uniform_output_biases: bool = False
    projection: bool = False
    projection_bias: bool = True
    last_layer_size: Annotated[int | None, Range(ge=1)] = None
    input_dropout: Annotated[float | None, Range(ge=0, lt=1)] = None
    embedding_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    variational: bool = False

    def __post_init__(self) -> None:
        check_ranges(self)

    @property
    def layer_sizes(self) -> list[int]:
        """Output width of each LSTM layer."""
        last = self.hidden_size if self.last_layer_size is None else self.last_layer_size
        return [self.hidden_size] * (self.num_layers - 1) + [last]

    @property
    def output_features(self) -> int:
        """Width of the vector the output layer scores: ``embedding_size`` with a projection,
        else the last LSTM layer's width."""
        return self.embedding_size if self.projection else self.layer_sizes[-1]


class LSTMLanguageModel(nn.Module):
    """Embedding → dropout → ``num_layers`` LSTM layers (dropout between) → dropout →
    [projection] → linear output layer.

    ``forward`` returns logits; :meth:`features` and :meth:`logits` are its two halves, so a loss
    can work from the features without building the ``(T, B, V)`` logits (a fused output
    + cross-entropy head) or add a term on them (Inan et al.'s augmented loss).
    """

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        if config.tie and config.output_features != config.embedding_size:
            raise TieError(
                f"cannot tie the output layer to the embedding: the output layer reads "
                f"{config.output_features} features (hidden_size={config.hidden_size}, "
                f"last_layer_size={config.last_layer_size}) but embedding_size={config.embedding_size}; set "
                "hidden_size == embedding_size, or projection=True (a learned projection to the embedding size), "
                "or last_layer_size=embedding_size (AWD-LSTM)"
            )
        self.config = config
        self.encoder = nn.Embedding(config.vocab_size, config.embedding_size)
        widths = [config.embedding_size, *config.layer_sizes]
        # One nn.LSTM per layer, so layer widths may differ and dropout between them can be locked.
        self.rnns = nn.ModuleList(nn.LSTM(widths[i], widths[i + 1]) for i in range(config.num_layers))
        dropout = LockedDropout if config.variational else nn.Dropout
        input_p = config.dropout if config.input_dropout is None else config.input_dropout
        self.input_drop, self.drop = dropout(input_p), dropout(config.dropout)
        self.projection = nn.Linear(widths[-1], config.embedding_size, bias=config.projection_bias) if config.projection else None
        self.decoder = TiedOutput(config.output_features, config.vocab_size)  # an nn.Linear with a fused .loss
        if config.tie:
            tie(self, "encoder.weight", "decoder.weight")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights uniform in ``[-init_range, init_range]`` (Zaremba et al., pytorch examples),
        biases zero (but see ``uniform_output_biases``); a tied weight is drawn once, as the one
        tensor it is."""
        r = self.config.init_range
        for p in self.parameters():  # each shared Parameter once
            if p.dim() > 1:  # embedding, LSTM, projection and decoder matrices
                nn.init.uniform_(p, -r, r)
            else:
                nn.init.zeros_(p)
        if self.config.uniform_output_biases:  # drawn after the weights: the default draws are unchanged
            nn.init.uniform_(self.decoder.bias, -r, r)
            if self.projection is not None and self.projection.bias is not None:
                nn.init.uniform_(self.projection.bias, -r, r)

    def init_state(self, batch_size: int) -> LSTMState:
        """Zero ``(h, c)`` per layer for a batch, on the model's device and dtype."""
        w = self.decoder.bias
        return tuple((w.new_zeros(1, batch_size, n), w.new_zeros(1, batch_size, n)) for n in self.config.layer_sizes)

    def features(self, tokens: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """The vectors the output layer scores, ``(T, B, output_features)``, and the state after
        the last step."""
        weight = embedding_dropout(self.encoder.weight, self.config.embedding_dropout, self.training)
        x = self.input_drop(F.embedding(tokens, weight))
        new_state = []
        for rnn, layer_state in zip(self.rnns, state, strict=True):
            x, layer_state = rnn(x, layer_state)
            x = self.drop(x)
            new_state.append(layer_state)
        if self.projection is not None:
            x = self.projection(x)
        return x, tuple(new_state)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Unnormalised next-token scores ``features @ decoder.weight.T + decoder.bias``."""
        return self.decoder(features)

    def forward(self, tokens: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """Logits ``(T, B, V)`` for token ids ``(T, B)``, and the state to carry to the next window."""
        features, state = self.features(tokens, state)
        return self.logits(features), state
