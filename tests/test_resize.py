"""resize_vocab: every tie group holding the vocabulary resized once, in place (identity, spec and
verify intact), exact kept rows, mean-initialised new rows, gradients and optimizer state after
the resize, checkpoints, and every refusal leaving the model unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

import tying
from tying import ResizedParameter, TieError, VocabResize
from tying.models import LSTMConfig, LSTMLanguageModel

# --------------------------------------------------------------------------- models


def _lstm(vocab: int = 10, tie: bool = True, seed: int = 0) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    return LSTMLanguageModel(LSTMConfig(vocab, 6, 6, num_layers=1, dropout=0.0, tie=tie))


def _randomise(model: nn.Module, seed: int = 1) -> None:
    """Distinct values everywhere (the LSTM starts its biases at zero), so a mean is informative."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


class GPTish(nn.Module):
    """Token embedding tied to the output layer, plus a position embedding of another size."""

    def __init__(self, vocab: int = 12, positions: int = 7, dim: int = 5) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(positions, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        tying.tie(self, "wte.weight", "lm_head.weight")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.wte(idx) + self.wpe(torch.arange(idx.shape[-1])))


class MLMHead(nn.Module):
    """BERT's layout: the decoder bias *is* a Parameter the head holds separately."""

    def __init__(self, vocab: int = 12, dim: int = 5) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.decoder = nn.Linear(dim, vocab)
        self.bias = nn.Parameter(torch.randn(vocab))
        tying.tie(self, "word_embeddings.weight", "decoder.weight")
        tying.tie(self, "bias", "decoder.bias")


class OneHotIn(nn.Module):
    """An input projection ``Linear(V, d)`` reading the embedding transposed."""

    def __init__(self, vocab: int = 9, dim: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.inp = nn.Linear(vocab, dim, bias=False)
        tying.tie_transposed(self, "emb.weight", "inp.weight")


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters(remove_duplicate=False)}


# --------------------------------------------------------------------------- grow / shrink


def test_grow_tied_lstm_keeps_rows_identity_and_ties() -> None:
    m = _lstm(10)
    _randomise(m)
    weight, bias = m.encoder.weight, m.decoder.bias
    before = _params(m)
    result = tying.resize_vocab(m, 13)

    assert result == VocabResize(
        10,
        13,
        (
            ResizedParameter(("encoder.weight", "decoder.weight"), 0, (10, 6), (13, 6)),
            ResizedParameter(("decoder.bias",), 0, (10,), (13,)),
        ),
    )
    assert m.encoder.weight is weight and m.decoder.weight is weight and m.decoder.bias is bias
    assert torch.equal(weight[:10], before["encoder.weight"])
    assert torch.equal(weight[10:], before["encoder.weight"].mean(0).expand(3, 6))
    assert torch.equal(bias[:10], before["decoder.bias"])
    assert torch.equal(bias[10:], before["decoder.bias"].mean().expand(3))
    assert (m.encoder.num_embeddings, m.decoder.out_features, m.decoder.in_features) == (13, 13, 6)
    assert m.config.vocab_size == 13 and m.config.embedding_size == 6
    assert tying.get_spec(m).ties == [tying.Tie("encoder.weight", "decoder.weight")]
    assert tying.verify(m).ok
    for k, v in before.items():  # nothing else moved
        if "encoder" not in k and "decoder" not in k:
            assert torch.equal(dict(m.named_parameters())[k], v), k
    logits, _ = m(torch.tensor([[12], [3]]), m.init_state(1))
    assert logits.shape == (2, 1, 13)


@pytest.mark.parametrize("tie", [True, False])
def test_shrink_keeps_the_first_rows(tie: bool) -> None:
    m = _lstm(10, tie=tie)
    _randomise(m)
    before = _params(m)
    result = tying.resize_vocab(m, 4)
    assert result.old_size == 10 and result.new_size == 4
    assert torch.equal(m.encoder.weight, before["encoder.weight"][:4])
    assert torch.equal(m.decoder.weight, before["decoder.weight"][:4])
    assert torch.equal(m.decoder.bias, before["decoder.bias"][:4])
    assert (m.decoder.weight is m.encoder.weight) is tie
    assert [p.paths for p in result.parameters] == (
        [("encoder.weight", "decoder.weight"), ("decoder.bias",)]
        if tie
        else [("encoder.weight",), ("decoder.weight",), ("decoder.bias",)]
    )
    assert tying.verify(m).ok


def test_untied_lstm_grows_each_matrix_with_its_own_mean() -> None:
    m = _lstm(10, tie=False)
    _randomise(m)
    before = _params(m)
    tying.resize_vocab(m, 12)
    for key in ("encoder.weight", "decoder.weight"):
        p = dict(m.named_parameters())[key]
        assert torch.equal(p[:10], before[key]) and torch.equal(p[10:], before[key].mean(0).expand(2, 6))
    assert m.decoder.weight is not m.encoder.weight
    assert tying.find_ties(m) == []


def test_position_embedding_of_another_size_is_left_alone() -> None:
    m = GPTish(vocab=12, positions=7)
    wpe = m.wpe.weight.detach().clone()
    result = tying.resize_vocab(m, 20)
    assert [p.paths for p in result.parameters] == [("wte.weight", "lm_head.weight")]
    assert m.wpe.weight.shape == (7, 5) and torch.equal(m.wpe.weight, wpe) and m.wpe.num_embeddings == 7
    assert m.lm_head.weight is m.wte.weight and m.lm_head.out_features == 20
    assert m(torch.tensor([[19, 0, 3]])).shape == (1, 3, 20)


def test_tied_bias_held_by_another_module_is_resized_once() -> None:
    m = MLMHead(vocab=12)
    bias = m.bias
    old = bias.detach().clone()
    result = tying.resize_vocab(m, 15)
    assert [(p.paths, p.dim) for p in result.parameters] == [  # named_parameters order: the root's own first
        (("bias", "decoder.bias"), 0),
        (("word_embeddings.weight", "decoder.weight"), 0),
    ]
    assert m.decoder.bias is bias and m.bias is bias and bias.shape == (15,)
    assert torch.equal(bias[:12], old) and torch.equal(bias[12:], old.mean().expand(3))
    assert tying.verify(m).ok


def test_transposed_target_is_resized_along_its_dimension_1() -> None:
    m = OneHotIn(vocab=9, dim=4)
    emb = m.emb.weight
    old = emb.detach().clone()
    result = tying.resize_vocab(m, 11)
    assert result.parameters == (ResizedParameter(("emb.weight", "inp.weight"), 0, (9, 4), (11, 4)),)
    assert m.inp.parametrizations.weight.original is emb
    assert m.inp.in_features == 11 and m.inp.out_features == 4 and m.emb.num_embeddings == 11
    assert m.inp.weight.shape == (4, 11) and torch.equal(m.inp.weight, emb.T)
    assert torch.equal(emb[:9], old)
    assert m.inp(F.one_hot(torch.tensor([10]), 11).float()).shape == (1, 4)
    tying.verify(m)


def test_three_way_tie_is_one_group_initialised_once(models) -> None:
    m = models.Seq2Seq(vocab=9, dim=4)
    tying.tie(m, "encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    calls = []

    def init(path: str, old: torch.Tensor, new: torch.Tensor) -> None:
        calls.append((path, tuple(old.shape), tuple(new.shape)))
        new.fill_(7.0)

    result = tying.resize_vocab(m, 12, init=init)
    assert calls == [("encoder.embed.weight", (9, 4), (3, 4))]
    assert len(result.parameters) == 1
    assert result.parameters[0].paths == ("encoder.embed.weight", "decoder.embed.weight", "decoder.out.weight")
    assert m.decoder.out.weight is m.encoder.embed.weight is m.decoder.embed.weight
    assert torch.equal(m.encoder.embed.weight[9:], torch.full((3, 4), 7.0))


def test_init_sees_vocabulary_first_views_and_a_transposed_group_once() -> None:
    m = OneHotIn(vocab=9, dim=4)
    before = m.emb.weight.detach().clone()
    g = torch.Generator().manual_seed(0)
    seen = []

    def init(path: str, old: torch.Tensor, new: torch.Tensor) -> None:
        seen.append((path, tuple(old.shape), tuple(new.shape)))
        new.normal_(0.0, float(old.std()), generator=g)

    tying.resize_vocab(m, 14, init=init)
    expected = torch.empty(5, 4).normal_(0.0, float(before.std()), generator=torch.Generator().manual_seed(0))
    assert seen == [("emb.weight", (9, 4), (5, 4))]
    assert torch.equal(m.emb.weight[9:], expected) and torch.equal(m.inp.weight[:, 9:], expected.T)


def test_the_canonical_path_is_the_declared_source_whatever_the_registration_order(models) -> None:
    m = models.HeadFirstLM(vocab=8)
    tying.tie(m, "embed.weight", "head.weight")
    result = tying.resize_vocab(m, 10)
    assert result.parameters[0].paths == ("embed.weight", "head.weight")


def test_padding_idx_row_is_kept_and_cannot_be_cut_off(snapshot) -> None:
    m = GPTish(vocab=12)
    m.wte.padding_idx = 10
    row = m.wte.weight[10].detach().clone()
    tying.resize_vocab(m, 14)
    assert m.wte.padding_idx == 10 and torch.equal(m.wte.weight[10], row)
    snap = snapshot(m)
    with pytest.raises(ValueError, match=r"cannot shrink 'wte\.weight' to 10 rows: its padding_idx 10 would be cut off"):
        tying.resize_vocab(m, 10)
    snap.assert_unchanged(m)
    tying.resize_vocab(m, 11)
    assert m.wte.padding_idx == 10


def test_explicit_paths_with_dimensions_as_read() -> None:
    m = nn.Module()
    m.emb = nn.Embedding(6, 3)
    m.inp = nn.Linear(6, 3, bias=False)  # untied: not found without paths
    m.logit_bias = nn.Parameter(torch.arange(6.0))
    result = tying.resize_vocab(m, 8, paths={"emb.weight": 0, "inp.weight": 1, "logit_bias": 0})
    assert [(p.paths, p.dim, p.new_shape) for p in result.parameters] == [
        (("logit_bias",), 0, (8,)),
        (("emb.weight",), 0, (8, 3)),
        (("inp.weight",), 1, (3, 8)),
    ]
    assert m.inp.in_features == 8 and torch.equal(m.logit_bias, torch.tensor([0, 1, 2, 3, 4, 5, 2.5, 2.5]))
    assert tying.resize_vocab(m, 6, paths=["emb.weight", "logit_bias"]).old_size == 8


def test_naming_a_linear_weight_drags_its_bias_along() -> None:
    m = nn.Module()
    m.head = nn.Linear(3, 6)
    result = tying.resize_vocab(m, 4, paths=["head.weight"])
    assert [p.paths for p in result.parameters] == [("head.weight",), ("head.bias",)]
    assert m.head.bias.shape == (4,) and m.head.out_features == 4


def test_a_mutable_config_is_updated_and_another_vocab_size_left(models) -> None:
    m = models.tied_lm(vocab=11)
    m.config = SimpleNamespace(vocab_size=11, decoder_vocab_size=11, hidden=4)
    tying.resize_vocab(m, 15)
    assert m.config == SimpleNamespace(vocab_size=15, decoder_vocab_size=15, hidden=4)
    m.config.vocab_size = 99  # not the model's size: not ours to change
    tying.resize_vocab(m, 16)
    assert m.config.vocab_size == 99


def test_an_embedding_reading_the_vocabulary_transposed_gets_its_embedding_dim() -> None:
    m = nn.Module()
    m.emb = nn.Embedding(6, 3)
    m.codes = nn.Embedding(3, 6)  # one row per feature over the vocabulary
    tying.tie_transposed(m, "emb.weight", "codes.weight")
    tying.resize_vocab(m, 8, paths=["emb.weight"])
    assert (m.codes.num_embeddings, m.codes.embedding_dim) == (3, 8) and m.codes.weight.shape == (3, 8)
    assert m.codes(torch.tensor([2])).shape == (1, 8)


def test_a_vocabulary_buffer_is_resized_with_the_parameters() -> None:
    """transformers' seq2seq models add a ``final_logits_bias`` buffer of shape (1, V) to the logits."""
    m = GPTish(vocab=12)
    m.register_buffer("final_logits_bias", torch.arange(12.0).unsqueeze(0))
    m.register_buffer("other_bias", torch.zeros(1, 12))  # not a known vocabulary buffer: left alone
    buffer = m.final_logits_bias
    seen = []

    def init(path: str, old: torch.Tensor, new: torch.Tensor) -> None:
        seen.append((path, tuple(old.shape), tuple(new.shape)))
        new.fill_(-1.0)

    result = tying.resize_vocab(m, 14, init=init)
    assert result.buffers == (ResizedParameter(("final_logits_bias",), 1, (1, 12), (1, 14)),)
    assert m.final_logits_bias is buffer and "final_logits_bias" in m.state_dict()
    assert torch.equal(buffer, torch.cat([torch.arange(12.0), torch.tensor([-1.0, -1.0])]).unsqueeze(0))
    assert seen == [("final_logits_bias", (12, 1), (2, 1)), ("wte.weight", (12, 5), (2, 5))]
    assert m.other_bias.shape == (1, 12)
    tying.resize_vocab(m, 10, paths=["wte.weight"])  # named parameters bring it along too
    assert torch.equal(m.final_logits_bias, torch.arange(10.0).unsqueeze(0))


# --------------------------------------------------------------------------- gradients, training, checkpoints


def test_gradients_reach_the_single_tensor_after_resize_even_with_a_live_graph(models) -> None:
    m = models.tied_lm(vocab=11)
    idx = torch.tensor([3, 10, 1])
    old_out = m(idx)
    old_out.sum().backward()  # the graph stays alive through ``old_out``
    tying.resize_vocab(m, 14)
    m.zero_grad()
    idx = torch.tensor([3, 13, 1])
    m(idx).logsumexp(-1).sum().backward()

    w = m.embed.weight.detach().clone().requires_grad_()
    ref = F.linear(torch.tanh(m.proj(F.embedding(idx, w))), w).logsumexp(-1).sum()
    (expected,) = torch.autograd.grad(ref, w)
    assert m.embed.weight.grad is m.head.weight.grad
    assert torch.allclose(m.embed.weight.grad, expected, rtol=0, atol=1e-6)
    assert [n for n, _ in m.named_parameters()] == ["embed.weight", "proj.weight", "proj.bias"]
    assert old_out.shape == (3, 11)


def test_an_existing_grad_is_resized_with_zero_rows(models) -> None:
    m = models.tied_lm(vocab=11)
    m(torch.tensor([1, 2])).sum().backward()
    grad = m.embed.weight.grad.clone()
    tying.resize_vocab(m, 13)
    assert torch.equal(m.embed.weight.grad, torch.cat([grad, torch.zeros(2, 4)]))


def test_a_training_step_after_resize_updates_the_one_tied_matrix() -> None:
    m = _lstm(10)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    tying.resize_vocab(m, 12, optimizer=opt)
    tokens = torch.tensor([[11, 3], [4, 11], [0, 1]])
    before = m.encoder.weight.detach().clone()
    for _ in range(2):
        features, _ = m.features(tokens[:-1], m.init_state(2))
        loss = m.decoder.loss(features.reshape(-1, 6), tokens[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(m.encoder.weight[11], before[11])  # the new word is trained, as input and output
    assert m.decoder.weight is m.encoder.weight and sum(len(g["params"]) for g in opt.param_groups) == len(list(m.parameters()))


def test_save_load_round_trip_after_resize(tmp_path) -> None:
    m = _lstm(10)
    _randomise(m)
    tying.resize_vocab(m, 13)
    path = tying.save(m, tmp_path / "lm.safetensors")
    fresh = _lstm(13, tie=False, seed=5)
    result = tying.load(fresh, path)
    assert result.applied_ties == [tying.Tie("encoder.weight", "decoder.weight")]
    assert fresh.decoder.weight is fresh.encoder.weight
    for (k, a), (_, b) in zip(m.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    shapes = {t.name: t.shape for t in tying.read_checkpoint(path).tensors}
    assert shapes["encoder.weight"] == (13, 6) and "decoder.weight" not in shapes


def test_sgd_momentum_state_is_resized_with_zero_rows() -> None:
    m = _lstm(10)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    out, _ = m(torch.tensor([[1, 2], [3, 4]]), m.init_state(2))
    out.sum().backward()
    opt.step()
    buf = opt.state[m.encoder.weight]["momentum_buffer"].clone()
    bias_buf = opt.state[m.decoder.bias]["momentum_buffer"].clone()
    result = tying.resize_vocab(m, 12, optimizer=opt)
    assert result.optimizer_state == ("encoder.weight: momentum_buffer", "decoder.bias: momentum_buffer")
    assert torch.equal(opt.state[m.encoder.weight]["momentum_buffer"], torch.cat([buf, torch.zeros(2, 6)]))
    assert torch.equal(opt.state[m.decoder.bias]["momentum_buffer"], torch.cat([bias_buf, torch.zeros(2)]))
    opt.zero_grad()
    out, _ = m(torch.tensor([[11, 2], [3, 10]]), m.init_state(2))
    out.sum().backward()
    opt.step()  # shapes agree


def test_adam_moments_are_resized_and_step_kept() -> None:
    m = _lstm(10)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, amsgrad=True)
    out, _ = m(torch.tensor([[1, 2], [3, 4]]), m.init_state(2))
    out.sum().backward()
    opt.step()
    state = {k: v.clone() for k, v in opt.state[m.encoder.weight].items()}
    result = tying.resize_vocab(m, 11, optimizer=opt)
    assert result.optimizer_state == tuple(
        f"{p}: {k}" for p in ("encoder.weight", "decoder.bias") for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    )
    after = opt.state[m.encoder.weight]
    assert torch.equal(after["step"], state["step"])
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert torch.equal(after[key], torch.cat([state[key], torch.zeros(1, 6)])), key
    opt.zero_grad()
    out, _ = m(torch.tensor([[10, 2], [3, 4]]), m.init_state(2))
    out.sum().backward()
    opt.step()


def test_without_the_optimizer_its_stale_state_fails_the_next_step(models) -> None:
    m = models.tied_lm(vocab=11)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.tensor([1])).sum().backward()
    opt.step()
    tying.resize_vocab(m, 12)  # the documented reason to pass optimizer=
    m(torch.tensor([11])).sum().backward()
    with pytest.raises(RuntimeError, match="size of tensor"):
        opt.step()


def test_optimizer_state_of_another_shape_is_refused_before_anything_changes(models, snapshot) -> None:
    m = models.tied_lm(vocab=11)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    opt.state[m.embed.weight]["row_stats"] = torch.zeros(11)  # an Adafactor-like factored statistic
    snap = snapshot(m)
    with pytest.raises(
        ValueError,
        match=r"optimizer state 'row_stats' of 'embed\.weight': its shape \[11\] is neither the parameter's \[11, 4\] nor a scalar",
    ):
        tying.resize_vocab(m, 12, optimizer=opt)
    snap.assert_unchanged(m)
    assert m.embed.num_embeddings == 11 and m.head.out_features == 11


# --------------------------------------------------------------------------- refusals


def _refused(model: nn.Module, snapshot, error: type[Exception], match: str, *args, **kwargs) -> None:
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        tying.resize_vocab(model, *args, **kwargs)
    snap.assert_unchanged(model)


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "12"])
def test_new_size_must_be_a_positive_integer(models, snapshot, size) -> None:
    _refused(models.tied_lm(), snapshot, ValueError, rf"new_size must be an integer >= 1, got {size!r}", size)


def test_no_vocabulary_parameter(models, snapshot) -> None:
    _refused(
        models.tied_ae(),
        snapshot,
        ValueError,
        r"^no vocabulary-sized parameter found in AutoEncoder: it has no nn\.Embedding; name the vocabulary parameters with paths=",
        4,
    )


def test_several_untied_embeddings_are_ambiguous(snapshot) -> None:
    m = GPTish()
    tying.untie(m, "lm_head.weight")
    _refused(
        m,
        snapshot,
        ValueError,
        r"cannot tell which embedding of GPTish holds the vocabulary: none is tied \('wte\.weight' \[12, 5\], "
        r"'wpe\.weight' \[7, 5\]\); name the vocabulary parameters with paths=",
        20,
    )
    tying.resize_vocab(m, 20, paths=["wte.weight", "lm_head.weight"])
    assert (m.wte.num_embeddings, m.lm_head.out_features, m.wpe.num_embeddings) == (20, 20, 7)


def test_an_untied_embedding_of_the_vocabulary_size_beside_a_tied_one_is_ambiguous(snapshot) -> None:
    m = GPTish(vocab=12, positions=12)  # as many positions as words: which is the vocabulary?
    _refused(
        m,
        snapshot,
        ValueError,
        r"cannot tell whether 'wpe\.weight' \[12, 5\] of GPTish holds the vocabulary: it has 12 rows like the tied "
        r"embedding 'wte\.weight' but is not tied to it",
        20,
    )
    assert [p.paths for p in tying.resize_vocab(m, 20, paths=["wte.weight"]).parameters] == [("wte.weight", "lm_head.weight")]
    assert m.wpe.num_embeddings == 12


def test_named_parameters_of_different_sizes(snapshot) -> None:
    _refused(
        GPTish(),
        snapshot,
        ValueError,
        r"vocabulary sizes disagree: 'wte\.weight' has 12 along dimension 0 \(shape \[12, 5\]\), "
        r"'wpe\.weight' has 7 along dimension 0 \(shape \[7, 5\]\)",
        20,
        paths=["wte.weight", "wpe.weight"],
    )


def test_unknown_path_and_missing_dimension(models, snapshot) -> None:
    m = models.tied_lm()
    unknown = r"no parameter 'embed\.wieght' in TinyLM.*did you mean 'embed\.weight'"
    _refused(m, snapshot, TieError, unknown, 12, paths=["embed.wieght"])
    _refused(m, snapshot, ValueError, r"'proj\.bias' \(shape \[4\]\) has no dimension 1 to resize", 12, paths={"proj.bias": 1})
    _refused(m, snapshot, ValueError, r"paths names no parameter", 12, paths=[])


def test_a_parameter_needing_two_dimensions_is_refused(snapshot) -> None:
    m = OneHotIn()
    _refused(
        m,
        snapshot,
        ValueError,
        r"cannot resize 'emb\.weight' \(shape \[9, 4\]\) along dimension \d \(for '.*'\) and dimension \d \(for '.*'\) at once",
        12,
        paths={"emb.weight": 0, "inp.weight": 0},
    )


def test_broken_declared_tie_is_refused(models, snapshot) -> None:
    m = models.tied_lm()
    m.head.weight = nn.Parameter(m.embed.weight.detach().clone())
    _refused(m, snapshot, TieError, r"declared ties are broken \(embed\.weight -> head\.weight: .*\); call tying\.retie", 12)


def test_undeclared_view_of_a_vocabulary_matrix_is_refused(models, snapshot) -> None:
    m = models.TinyLM()
    m.head.weight = nn.Parameter(m.embed.weight.data)  # a "fake tie": same memory, two Parameters
    views = r"cannot resize 'embed\.weight', 'head\.weight': they are distinct Parameters over the same memory"
    _refused(m, snapshot, TieError, views, 12)


def test_foreign_parametrization_on_a_vocabulary_matrix_is_refused(models, snapshot) -> None:
    class Scale(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    m = models.TinyLM()
    parametrize.register_parametrization(m.head, "weight", Scale())
    foreign = r"cannot resize 'head\.weight' \(for 'head\.weight'\): it is computed by parametrization Scale"
    _refused(m, snapshot, TieError, foreign, 12)
    parametrize.register_parametrization(m.proj, "weight", Scale())  # not a vocabulary matrix: no objection
    parametrize.remove_parametrizations(m.head, "weight")
    assert tying.resize_vocab(m, 12).parameters[0].paths == ("embed.weight",)


def test_init_that_raises_leaves_the_model_unchanged(models, snapshot) -> None:
    def init(path: str, old: torch.Tensor, new: torch.Tensor) -> None:
        raise RuntimeError("no idea")

    _refused(models.tied_lm(), snapshot, RuntimeError, "no idea", 12, init=init)


# --------------------------------------------------------------------------- properties


@settings(max_examples=max(10, settings.default.max_examples // 4))
@given(
    old=st.integers(1, 24),
    sizes=st.lists(st.integers(1, 24), min_size=1, max_size=3),
    kind=st.sampled_from(["tied", "untied", "transposed", "bias"]),
)
def test_any_sequence_of_resizes_keeps_the_common_prefix_and_every_tie(old: int, sizes: list[int], kind: str) -> None:
    dim = 25  # no Linear of the model has a vocabulary-sized output by accident
    build = {"bias": lambda: MLMHead(old, dim), "transposed": lambda: OneHotIn(old, dim)}
    m = build.get(kind, lambda: GPTish(old, 25, dim))()  # as many positions as words would be ambiguous
    if kind == "untied":
        tying.untie(m, "lm_head.weight")
        del m.wpe  # one embedding left: no ambiguity
    first = next(iter(m.parameters()))
    reference = first.detach().clone()
    objects = [p for _, p in m.named_parameters(remove_duplicate=False)]
    spec = list(tying.get_spec(m).ties)
    prefix = old
    for size in sizes:
        result = tying.resize_vocab(m, size)
        prefix = min(prefix, size)
        assert result.new_size == size and all(p.new_shape[p.dim] == size for p in result.parameters)
        assert first.shape[0] == size and torch.equal(first[:prefix], reference[:prefix])
    after = [p for _, p in m.named_parameters(remove_duplicate=False)]
    assert all(a is b for a, b in zip(after, objects, strict=True))
    assert tying.get_spec(m).ties == spec
    assert tying.verify(m).ok


# --------------------------------------------------------------------------- EmbeddingBag sites


class BagModel(nn.Module):
    """A candidate embedding and a history ``nn.EmbeddingBag`` (padding row 0) sharing one table,
    as a recommender's shared item table, beside an untied table of another size."""

    def __init__(self, items: int = 9, dim: int = 4) -> None:
        super().__init__()
        self.item = nn.Embedding(items, dim)
        self.history = nn.EmbeddingBag(items, dim, mode="mean", padding_idx=0)
        self.user = nn.Embedding(3, dim)
        tying.tie(self, "item.weight", "history.weight")

    def forward(self, item: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return (self.item(item) * self.history(history)).sum(-1)


def test_an_embedding_bag_tied_to_an_embedding_is_resized_with_it() -> None:
    model = BagModel()
    _randomise(model)
    item, history = torch.tensor([1, 8]), torch.tensor([[0, 2, 3], [0, 0, 8]])
    before = model(item, history)
    result = tying.resize_vocab(model, 12)
    assert [(r.paths, r.old_shape, r.new_shape) for r in result.parameters] == [(("item.weight", "history.weight"), (9, 4), (12, 4))]
    assert model.history.num_embeddings == model.item.num_embeddings == 12 and model.history.padding_idx == 0
    assert model.history.weight is model.item.weight and model.user.num_embeddings == 3
    assert torch.equal(model(item, history), before)
    assert model(torch.tensor([11]), torch.tensor([[0, 11, 10]])).shape == (1,)  # the new items are read by both
    tying.verify(model)
    tying.resize_vocab(model, 2)  # shrinking keeps the padding row
    assert model.history.num_embeddings == 2


def test_an_embedding_bag_cannot_shrink_below_its_padding_row() -> None:
    model = BagModel()
    model.history.padding_idx = 5
    with pytest.raises(ValueError, match="padding_idx"):
        tying.resize_vocab(model, 4)
    assert model.item.num_embeddings == 9
