r"""Word-level TrellisNet language model: one convolution's weights shared across every depth.

A trellis network (Bai, Kolter & Koltun 2019, arXiv 1810.06682) is a temporal convolutional
network whose levels all use **one** weight set and read the input again at every level. With
embedded tokens :math:`x_t` and the hidden state :math:`z^{(i)}_t = (h^{(i)}_t, c^{(i)}_t)` of
level :math:`i` (:math:`z^{(0)} = 0`), level :math:`i+1` is a causal convolution of kernel
:math:`k` over :math:`[x; h^{(i)}]` followed by an LSTM-style gate:

.. math::

    a_t = \sum_{j=0}^{k-1} W^x_j x_{t-k+1+j} + W^h_j\,\mathrm{drop}(h^{(i)}_{t-k+1+j}) + b
        = (i, o, g, f), \qquad
    c^{(i+1)}_t = \sigma(f) \odot c^{(i)}_{t-1} + \sigma(i) \odot \tanh g, \qquad
    h^{(i+1)}_t = \sigma(o) \odot \tanh c^{(i+1)}_t .

The input part :math:`\sum_j W^x_j x_{t-k+1+j} + b` (the *input injection*) does not depend on the
level, so with shared weights it is computed once per forward (the paper's trick). The output
layer scores :math:`h^{(L)}_t` (through a learned projection when ``hidden_size !=
embedding_size`` and the embeddings are tied).

``depth = "tied"`` is TrellisNet: ``L`` level modules whose parameters are tied to level 0's by
the one line ``share_layers(self, "levels")`` (:mod:`tying.sharing`), so :func:`tying.summary`
shows one weight set, :func:`tying.save` stores it once and its gradient is the sum over levels.
``depth = "untied"`` is the same network with a weight set per level: a temporal convolutional
network (TCN) of the same depth with about ``L`` times the layer weights. ``depth =
"equilibrium"`` takes the tie to its limit, the same level applied until its output stops
changing: one level whose output is the fixed point :math:`z^\star = f(z^\star; x)` found by a
root solver and trained by implicit differentiation (:class:`tying.nn.Implicit`; the DEQ
trellis of Bai, Kolter & Koltun 2019, arXiv 1909.01377), with training memory that does not grow
with the number of solver iterations. ``tie_embeddings`` ties
the output classifier to the input embedding (Press & Wolf 2017), as the paper's code does.

The state carried from one BPTT window to the next is the exact history the causal convolutions
and the cell recurrence read: the last ``k-1`` embedded inputs, the last ``k-1`` columns of
every level's input :math:`h^{(i)}` and the last column of its :math:`c^{(i)}`. Two windows
read with the carried state give the outputs of one window of double length (in eval mode), so
a kernel longer than the window is no error: the missing columns come from the state
(zeros at the start of the stream, the causal padding).

Shapes are sequence-first: tokens ``(T, B)``, features ``(T, B, d)``, logits ``(T, B, V)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tying.constraints import Range, check_ranges
from tying.core import tie
from tying.nn import Implicit, LockedDropout, TiedOutput, embedding_dropout
from tying.sharing import share_layers

__all__ = ["LevelHistory", "TrellisConfig", "TrellisLanguageModel", "TrellisLevel", "TrellisState"]


class LevelHistory(NamedTuple):
    """The columns before the window that one level reads: ``hidden`` ``(k-1, B, H)``, the last
    ``k-1`` columns of its input :math:`h`; ``cell`` ``(1, B, H)``, the last column of its input :math:`c`."""

    hidden: torch.Tensor
    cell: torch.Tensor


class TrellisState(NamedTuple):
    """What a :class:`TrellisLanguageModel` carries between windows: ``inputs`` ``(k-1, B, E)``,
    the last embedded inputs; ``hidden`` ``(L, k-1, B, H)`` and ``cell`` ``(L, 1, B, H)``, each
    level's :class:`LevelHistory` stacked (level ``i``'s is the history of its input :math:`z^{(i)}`)."""

    inputs: torch.Tensor
    hidden: torch.Tensor
    cell: torch.Tensor


@dataclass(frozen=True)
class TrellisConfig:
    """Sizes and regularisers of a :class:`TrellisLanguageModel`.

    Attributes:
        vocab_size: V, rows of the input and output embeddings.
        embedding_size: E, width of the input embedding.
        hidden_size: H, width of :math:`h` and :math:`c` at every level.
        levels: L, the depth (levels of the trellis).
        kernel_size: k, the causal convolution's width in time steps.
        depth: ``"tied"`` (TrellisNet: one weight set for every level), ``"untied"`` (a TCN
            with a weight set per level) or ``"equilibrium"`` (one level run to its fixed point;
            ``levels`` must then be 1).
        tie_embeddings: the output classifier's weight is the input embedding (a projection
            ``H -> E`` first when ``hidden_size != embedding_size``).
        input_dropout: variational dropout on the embedded inputs (one mask per sequence).
        embedding_dropout: probability of dropping a word's whole embedding row in the lookup.
        hidden_dropout: variational dropout on :math:`h` where a level reads it: one mask per
            sequence, shared by every time step and every level (the paper's code).
        output_dropout: variational dropout on :math:`h^{(L)}` before the output layer.
        init_std: the level weights and biases start normal with this std (the paper's code: 0.01).
        init_range: embedding, projection and untied decoder weights start uniform in
            ``[-init_range, init_range]``; the output bias at zero.
        solver, tol, max_iter, backward: the fixed-point solve of ``depth = "equilibrium"``
            (:class:`tying.nn.Implicit`'s arguments; ``max_iter`` caps the forward iterations,
            the effective depth).
    """

    vocab_size: Annotated[int, Range(ge=1)]
    embedding_size: Annotated[int, Range(ge=1)] = 200
    hidden_size: Annotated[int, Range(ge=1)] = 200
    levels: Annotated[int, Range(ge=1)] = 8
    kernel_size: Annotated[int, Range(ge=1)] = 2
    depth: Literal["tied", "untied", "equilibrium"] = "tied"
    tie_embeddings: bool = True
    input_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    embedding_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    hidden_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    output_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    init_std: Annotated[float, Range(gt=0)] = 0.01
    init_range: Annotated[float, Range(gt=0)] = 0.1
    solver: Literal["anderson", "broyden", "fixed_point"] = "anderson"
    tol: Annotated[float, Range(gt=0)] = 1e-3
    max_iter: Annotated[int, Range(ge=1)] = 30
    backward: Literal["implicit", "phantom"] = "implicit"

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.depth not in ("tied", "untied", "equilibrium"):
            raise ValueError(f"depth must be 'tied', 'untied' or 'equilibrium', got {self.depth!r}")
        if self.depth == "equilibrium" and self.levels != 1:
            raise ValueError(f"levels={self.levels} with depth='equilibrium': the equilibrium model runs one level to its fixed point; set levels = 1 (max_iter caps the solver)")

    @property
    def projection(self) -> bool:
        """Whether a learned linear map ``H -> E`` precedes the tied output layer."""
        return self.tie_embeddings and self.hidden_size != self.embedding_size

    @property
    def output_features(self) -> int:
        """Width of the vectors the output layer scores."""
        return self.embedding_size if self.projection else self.hidden_size


def _shifted(history: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """``[history; x]`` (``(k-1+T, B, C)``) unfolded to ``(T, B, k*C)``: row ``t`` holds
    columns ``t-k+1 .. t``, oldest first, to meet a conv weight ``(out, C, k)`` as ``(out, k*C)``."""
    full = torch.cat([history, x]) if k > 1 else x
    steps = x.size(0)
    return torch.cat([full[j : j + steps] for j in range(k)], dim=-1)


def _as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight ``(out, C, k)`` as ``(out, k*C)``, tap-major, to match :func:`_shifted`."""
    return weight.permute(0, 2, 1).reshape(weight.size(0), -1)


class TrellisLevel(nn.Module):
    """One level's weights: the causal convolution over ``[x; h]`` (``weight_x`` ``(4H, E, k)``,
    ``weight_h`` ``(4H, H, k)``, ``bias`` ``(4H,)``, gate order ``i, o, g, f``) and its gated activation.

    :meth:`inject` and :meth:`forward` split the level so a caller can compute the injection once
    and apply the level any number of times (an unrolled stack, or a fixed-point solver).
    """

    def __init__(self, embedding_size: int, hidden_size: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight_x = nn.Parameter(torch.empty(4 * hidden_size, embedding_size, kernel_size))
        self.weight_h = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))

    def inject(self, x: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """The input injection ``(T, B, 4H)``: :math:`\\sum_j W^x_j x_{t-k+1+j} + b` for embedded
        inputs ``x`` ``(T, B, E)`` after ``history`` ``(k-1, B, E)`` (the inputs before the window)."""
        return torch.addmm(self.bias, _shifted(history, x, self.kernel_size).flatten(0, 1), _as_matrix(self.weight_x).t()).view(
            *x.shape[:2], -1
        )

    def forward(self, z: torch.Tensor, injection: torch.Tensor, history: LevelHistory, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One level: ``z`` ``(T, B, 2H)`` = :math:`[h^{(i)}; c^{(i)}]` of every time step of the window
        -> :math:`[h^{(i+1)}; c^{(i+1)}]` ``(T, B, 2H)``.

        ``injection``: :meth:`inject`'s ``(T, B, 4H)``; ``history``: the columns of ``z`` before the
        window (:class:`LevelHistory`); ``mask``: the hidden dropout mask ``(B, H)`` (already scaled
        by ``1/(1-p)``) applied to :math:`h` where the convolution reads it, or None."""
        h, c = z.chunk(2, dim=-1)
        hidden = torch.cat([history.hidden, h]) if self.kernel_size > 1 else h
        if mask is not None:
            hidden = hidden * mask
        taps = _shifted(hidden[: self.kernel_size - 1], hidden[self.kernel_size - 1 :], self.kernel_size)
        gates = injection + (taps.flatten(0, 1) @ _as_matrix(self.weight_h).t()).view_as(injection)
        i, o, g, f = gates.chunk(4, dim=-1)
        c_before = torch.cat([history.cell, c[:-1]])
        c_next = torch.sigmoid(f) * c_before + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c_next), c_next], dim=-1)


class _LevelStep(nn.Module):
    """The solver's :math:`f(z; \text{context})`: one application of the level the context names
    (``(level, injection, history, mask)``, :meth:`TrellisLevel.forward`'s arguments), on a
    batch-first state ``(B, T, 2H)``, as the solver judges each sample (first dimension) apart.
    It holds no parameters, so the level's weights stay where the model declares them."""

    def forward(self, z: torch.Tensor, context: tuple[TrellisLevel, torch.Tensor, LevelHistory, torch.Tensor | None]) -> torch.Tensor:
        level, injection, history, mask = context
        return level(z.transpose(0, 1), injection, history, mask).transpose(0, 1)


class TrellisLanguageModel(nn.Module):
    """Embedding → input dropout → ``levels`` trellis levels → output dropout → [projection] →
    linear output layer; the interface of :class:`tying.models.LSTMLanguageModel` (``forward``,
    ``features``, ``logits``, ``init_state``, ``decoder``), so the lm task's recurrent path runs it.

    The building blocks are public for running the level in other ways (a deep-equilibrium
    solver): :meth:`embed`, :meth:`hidden_mask`, ``levels[i].inject`` and ``levels[i](...)``.
    """

    def __init__(self, config: TrellisConfig) -> None:
        super().__init__()
        self.config = config
        e, h, k = config.embedding_size, config.hidden_size, config.kernel_size
        self.encoder = nn.Embedding(config.vocab_size, e)
        self.levels = nn.ModuleList(TrellisLevel(e, h, k) for _ in range(config.levels))
        if config.depth == "tied":
            share_layers(self, "levels")  # TrellisNet: one weight set read at every level
        self.equilibrium = (
            Implicit(_LevelStep(), solver=config.solver, tol=config.tol, max_iter=config.max_iter, backward=config.backward)
            if config.depth == "equilibrium"
            else None
        )
        self.input_drop, self.output_drop = LockedDropout(config.input_dropout), LockedDropout(config.output_dropout)
        self.projection = nn.Linear(h, e) if config.projection else None
        self.decoder = TiedOutput(config.output_features, config.vocab_size)  # an nn.Linear with a fused .loss
        if config.tie_embeddings:
            tie(self, "encoder.weight", "decoder.weight")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Level weights and biases normal(0, ``init_std``) (the paper's code); the embedding, the
        projection and an untied decoder uniform in ``[-init_range, init_range]``; other biases zero.
        A shared weight is drawn once, as the one tensor it is."""
        c = self.config
        for name, p in self.named_parameters():  # each shared Parameter once
            if name.startswith("levels."):
                nn.init.normal_(p, 0.0, c.init_std)
            elif p.dim() > 1:
                nn.init.uniform_(p, -c.init_range, c.init_range)
            else:
                nn.init.zeros_(p)

    def init_state(self, batch_size: int) -> TrellisState:
        """The state at the start of a stream: zero history (the causal padding), on the model's
        device and dtype."""
        c, w = self.config, self.decoder.bias
        k = c.kernel_size - 1
        return TrellisState(
            w.new_zeros(k, batch_size, c.embedding_size),
            w.new_zeros(c.levels, k, batch_size, c.hidden_size),
            w.new_zeros(c.levels, 1, batch_size, c.hidden_size),
        )

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``(T, B)`` -> embedded inputs ``(T, B, E)``, after embedding and input dropout."""
        weight = embedding_dropout(self.encoder.weight, self.config.embedding_dropout, self.training)
        return self.input_drop(F.embedding(tokens, weight))

    def hidden_mask(self, batch_size: int) -> torch.Tensor | None:
        """A fresh hidden dropout mask ``(B, H)`` scaled by ``1/(1-p)``, or None (eval, or p = 0)."""
        p = self.config.hidden_dropout
        if not self.training or p == 0.0:
            return None
        return self.decoder.bias.new_empty(batch_size, self.config.hidden_size).bernoulli_(1.0 - p) / (1.0 - p)

    def _check(self, tokens: torch.Tensor, state: TrellisState) -> None:
        c = self.config
        if tokens.dim() != 2 or tokens.size(0) == 0:
            raise ValueError(f"tokens must be (T, B) with T >= 1, got shape {tuple(tokens.shape)}")
        want = (c.kernel_size - 1, tokens.size(1), c.embedding_size)
        if tuple(state[0].shape) != want or tuple(state[1].shape) != (c.levels, *want[:2], c.hidden_size):
            raise ValueError(
                f"state history {tuple(state[0].shape)} / {tuple(state[1].shape)} does not fit kernel_size={c.kernel_size}, "
                f"levels={c.levels} and a batch of {tokens.size(1)}: start from init_state({tokens.size(1)})"
            )

    def features(self, tokens: torch.Tensor, state: TrellisState) -> tuple[torch.Tensor, TrellisState]:
        """The vectors the output layer scores, ``(T, B, output_features)``, and the state after the window."""
        self._check(tokens, state)
        inputs, hidden, cell = state
        x = self.embed(tokens)
        steps, mask = x.size(0), self.hidden_mask(x.size(1))
        solve = self._stack if self.equilibrium is None else self._fixed_point
        z, new_hidden, new_cell = solve(x, inputs, hidden, cell, mask)
        out = self.output_drop(z.chunk(2, dim=-1)[0])
        if self.projection is not None:
            out = self.projection(out)
        return out, TrellisState(torch.cat([inputs, x])[steps:], new_hidden, new_cell)

    def _stack(self, x: torch.Tensor, inputs: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The ``levels`` levels in turn from :math:`z^{(0)} = 0`: the last level's ``z`` and every
        level's input history for the next window (``hidden``, ``cell`` as in :class:`TrellisState`)."""
        steps = x.size(0)
        z = x.new_zeros(steps, x.size(1), 2 * self.config.hidden_size)  # level 0: h = c = 0
        levels: list[TrellisLevel] = list(self.levels)  # type: ignore[arg-type]
        injection = levels[0].inject(x, inputs)  # tied: the same at every level, computed once
        new_hidden, new_cell = [], []
        for i, level in enumerate(levels):
            if i and self.config.depth == "untied":
                injection = level.inject(x, inputs)
            h, c = z.chunk(2, dim=-1)
            new_hidden.append(torch.cat([hidden[i], h])[steps:])
            new_cell.append(c[-1:])
            z = level(z, injection, LevelHistory(hidden[i], cell[i]), mask)
        return z, torch.stack(new_hidden), torch.stack(new_cell)

    def _fixed_point(self, x: torch.Tensor, inputs: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The fixed point :math:`z^\\star` of the one level (from :math:`z = 0`) and its history:
        at the fixed point a level's input is its output."""
        assert self.equilibrium is not None
        level: TrellisLevel = self.levels[0]  # type: ignore[assignment]
        context = (level, level.inject(x, inputs), LevelHistory(hidden[0], cell[0]), mask)
        z = self.equilibrium(context, x.new_zeros(x.size(1), x.size(0), 2 * self.config.hidden_size)).transpose(0, 1)
        h, c = z.chunk(2, dim=-1)
        return z, torch.cat([hidden[0], h])[x.size(0) :].unsqueeze(0), c[-1:].unsqueeze(0)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Unnormalised next-token scores ``features @ decoder.weight.T + decoder.bias``."""
        return self.decoder(features)

    def forward(self, tokens: torch.Tensor, state: TrellisState) -> tuple[torch.Tensor, TrellisState]:
        """Logits ``(T, B, V)`` for token ids ``(T, B)``, and the state to carry to the next window."""
        features, state = self.features(tokens, state)
        return self.logits(features), state
