"""Weight normalization of a tied weight (tying.weight_norm): one g and one v for the whole tie
group, surviving training, checkpoints, meta-device initialisation and re-tying."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm

import tying
from tying import CheckpointError, TieError


class LM(nn.Module):
    """Embedding, output layer (tied), and a decoder reading the embedding transposed."""

    def __init__(self, vocab: int = 10, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.dec = nn.Linear(vocab, dim, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.embed(idx)
        return self.head(h + self.dec(F.one_hot(idx, self.embed.num_embeddings).float()))


def build(normalize: bool = True, dim: int = 0) -> LM:
    m = LM()
    tying.tie(m, "embed.weight", "head.weight")
    tying.tie_transposed(m, "embed.weight", "dec.weight")
    if normalize:
        tying.weight_norm(m, "embed.weight", dim=dim)
    return m


IDX = torch.tensor([[1, 3, 5], [7, 2, 0]])


def originals(m: nn.Module, path: str) -> tuple[nn.Parameter, nn.Parameter]:
    plist = m.get_submodule(path).parametrizations.weight
    return plist.original0, plist.original1


def test_one_g_and_one_v_for_the_group() -> None:
    torch.manual_seed(0)
    m = build(normalize=False)
    w = m.embed.weight.detach().clone()
    tying.weight_norm(m, "head.weight")  # any member names the group
    g, v = originals(m, "embed")
    assert originals(m, "head") == (g, v) and originals(m, "dec") == (g, v)
    assert [n for n, _ in m.named_parameters()] == ["embed.parametrizations.weight.original0", "embed.parametrizations.weight.original1"]
    assert torch.allclose(m.embed.weight, w) and torch.equal(m.head.weight, m.embed.weight) and torch.equal(m.dec.weight, m.embed.weight.T)
    assert tying.get_spec(m).parametrizations == {"embed.weight": {"kind": "weight_norm", "dim": 0}}
    tying.verify(m)
    groups = [g.paths for g in tying.find_ties(m)]
    assert groups == [[f"{p}.parametrizations.weight.original{i}" for p in ("embed", "head", "dec")] for i in (0, 1)]


def test_g_and_v_receive_the_gradients_of_every_use() -> None:
    torch.manual_seed(1)
    m = build()
    g, v = originals(m, "embed")
    m(IDX).square().sum().backward()
    # Reference: the same function with a separate (g, v) copy per use; the tied gradient is their sum.
    gs = [g.detach().clone().requires_grad_() for _ in range(3)]
    vs = [v.detach().clone().requires_grad_() for _ in range(3)]
    ws = [gi * vi / vi.norm(dim=1, keepdim=True) for gi, vi in zip(gs, vs, strict=True)]
    h = F.embedding(IDX, ws[0]) + F.linear(F.one_hot(IDX, 10).float(), ws[2].T)
    F.linear(h, ws[1]).square().sum().backward()
    assert torch.allclose(g.grad, sum(x.grad for x in gs), rtol=1e-5, atol=1e-4)
    assert torch.allclose(v.grad, sum(x.grad for x in vs), rtol=1e-5, atol=1e-4)
    assert all(x.grad.abs().sum() > 0 for x in (*gs, *vs))  # every use contributes


def test_trains_with_the_tie_intact() -> None:
    torch.manual_seed(2)
    m = build()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(m(IDX).flatten(0, 1), IDX.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    tying.verify(m)
    assert torch.equal(m.head.weight, m.embed.weight) and torch.equal(m.dec.weight, m.embed.weight.T)


def test_save_load_round_trip_stores_g_and_v_once(tmp_path) -> None:
    torch.manual_seed(3)
    src = build()
    path = tying.save(src, tmp_path / "wn.safetensors")
    info = tying.read_checkpoint(path)
    assert [t.name for t in info.tensors] == ["embed.parametrizations.weight.original0", "embed.parametrizations.weight.original1"]
    assert info.spec.parametrizations == {"embed.weight": {"kind": "weight_norm", "dim": 0}}
    dst = build()
    tying.load(dst, path)
    assert torch.equal(dst(IDX), src(IDX)) and originals(dst, "head") == originals(dst, "embed")
    tying.verify(dst)
    # A model built without the normalization is told how to build it.
    with pytest.raises(CheckpointError, match=r"call tying\.weight_norm\(model, 'embed\.weight', dim=0\) before loading"):
        tying.load(build(normalize=False), path)
    with pytest.raises(CheckpointError, match=r"records 'embed\.weight' as .*'dim': 0.* but the model as .*'dim': 1"):
        tying.load(build(dim=1), path)


def test_meta_build_materialize_equals_eager_and_reties(tmp_path) -> None:
    torch.manual_seed(4)
    eager = build()
    with torch.device("meta"):
        m = build()
    torch.manual_seed(4)
    tying.materialize(m, "cpu")  # g and v computed from the initialised weight, as in an eager build
    for (k, a), (_, b) in zip(eager.state_dict().items(), m.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    tying.verify(m)
    with torch.device("meta"):
        cold = build()
    tying.materialize(cold, "cpu", init=False)
    tying.load(cold, tying.save(eager, tmp_path / "e.safetensors"))
    assert torch.equal(cold(IDX), eager(IDX)) and tying.verify(cold).ok


def test_deepcopy_to_assign_load_and_to_empty_keep_or_restore_the_group() -> None:
    m = build()
    for other in (copy.deepcopy(m), copy.deepcopy(m).double()):
        assert originals(other, "head") == originals(other, "embed") == originals(other, "dec")
        tying.verify(other)
    fresh = build()
    fresh.load_state_dict(m.state_dict(), assign=True)  # one new Parameter per key: re-tied by the hook
    assert originals(fresh, "head") == originals(fresh, "embed") and torch.equal(fresh(IDX), m(IDX))
    tying.verify(fresh)
    with torch.device("meta"):
        cold = build()
    cold.to_empty(device="cpu")  # one new tensor per registration: the group falls apart ...
    assert tying.verify(cold, raise_error=False).broken
    tying.retie(cold)  # ... and retie restores it
    tying.verify(cold)


def test_untie_a_target_and_refuse_the_source() -> None:
    m = build()
    before = m.head.weight.detach().clone()
    with pytest.raises(TieError, match=r"cannot untie 'embed\.weight': it is computed by weight_norm"):
        tying.untie(m, "embed.weight")
    tying.untie(m, "head.weight")
    assert torch.equal(m.head.weight, before) and isinstance(m.head.weight, nn.Parameter)
    assert "head.weight" in dict(m.named_parameters())
    tying.verify(m)


def test_wrong_orders_get_clear_errors() -> None:
    # weight-normalizing by hand gives one member its own g and v: the tie is broken, and said so
    m = build(normalize=False)
    torch_weight_norm(m.head)
    report = tying.verify(m, raise_error=False)
    assert [b.tie.target for b in report.broken] == ["head.weight"]
    # normalizing first, tying after: refused
    m = LM()
    torch_weight_norm(m.embed)
    with pytest.raises(TieError, match=r"'embed\.weight' is parametrized from several tensors .*declare the ties on the plain tensor first, then normalize the group with tying\.weight_norm"):
        tying.tie(m, "embed.weight", "head.weight")
    # a tie added to a normalized group: refused, with the order to follow
    m = build()
    m.extra = nn.Linear(4, 10, bias=False)
    with pytest.raises(TieError, match=r"declare every tie of the group first, then apply the weight normalization"):
        tying.tie(m, "embed.weight", "extra.weight")
    with pytest.raises(TieError, match=r"'extra\.weight' is not tied; tying\.weight_norm normalizes a tie group"):
        tying.weight_norm(m, "extra.weight")
    with pytest.raises(TieError, match=r"normalized already"):
        tying.weight_norm(m, "embed.weight", dim=1)
    tying.weight_norm(m, "embed.weight")  # the same request again: nothing to do


def test_resize_vocab_refuses_a_normalized_embedding_instead_of_resizing_another() -> None:
    """It used to resize the position embedding (the only plain nn.Embedding left) and report success."""
    from tying.models import TransformerConfig, TransformerLanguageModel

    m = TransformerLanguageModel(TransformerConfig(vocab_size=50, embedding_size=16, num_layers=1, num_heads=2, context_size=8))
    tying.weight_norm(m, "wte.weight")
    with pytest.raises(TieError, match=r"the embedding 'wte' is computed by a parametrization .*resize before applying it"):
        tying.resize_vocab(m, 60)
    assert m.wpe.weight.shape == (8, 16)


def test_compiled_model_gives_eager_losses_and_gradients() -> None:
    torch.manual_seed(5)
    eager = build()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend="aot_eager")
    for model in (eager, compiled):
        F.cross_entropy(model(IDX).flatten(0, 1), IDX.flatten()).backward()
    for a, b in zip(originals(eager, "embed"), originals(compiled_model, "embed"), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    tying.verify(compiled)


def test_a_weight_normalized_lstm_lm_trains_through_param_groups() -> None:
    """unique_parameters / param_groups used to raise TieError ("parametrized from several
    tensors") on a weight-normalized group: the documented optimizer setup could not be built."""
    from tying.models import LSTMConfig, LSTMLanguageModel

    torch.manual_seed(6)
    vocab = 12
    m = LSTMLanguageModel(LSTMConfig(vocab_size=vocab, embedding_size=8, hidden_size=8, num_layers=1, dropout=0.0, tie=True))
    tying.weight_norm(m, "encoder.weight")
    g, v = originals(m, "encoder")
    groups = tying.param_groups(m, 1e-4)
    entries = [p for group in groups for p in group["params"]]
    assert sum(p is g for p in entries) == 1 and sum(p is v for p in entries) == 1
    assert len(entries) == len({id(p) for p in entries}) == len(list(m.parameters()))
    assert tying.count_parameters(m) == sum(p.numel() for p in entries)
    before = {name: p.detach().clone() for group in groups for name, p in zip(group["param_names"], group["params"], strict=True)}

    optimizer = torch.optim.SGD(groups, lr=1.0)
    tokens = torch.randint(vocab, (9, 4), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(5):
        logits, _ = m(tokens[:-1], m.init_state(4))
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        # One gradient per original, reached by both uses (the decoder reads the very same g and v).
        assert originals(m, "decoder") == (g, v) and g.grad is not None and v.grad is not None
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert all(not torch.equal(p, before[name]) for group in groups for name, p in zip(group["param_names"], group["params"], strict=True))
    tying.verify(m)
    assert torch.equal(m.decoder.weight, m.encoder.weight)
