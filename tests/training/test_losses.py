"""Training objectives: the fused LM loss equals the logits-based one (value and gradients), the
REAL augmented loss equals a direct computation, the projection penalty, and build_loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tying.models import LSTMConfig, LSTMLanguageModel
from tying.tasks.lm import LossConfig, augmented_kl, build_loss, fused_lm_loss, lm_loss, projection_penalty, real_loss


def _model(tie: bool = True, **kw) -> LSTMLanguageModel:
    torch.manual_seed(0)
    config = LSTMConfig(vocab_size=57, embedding_size=12, hidden_size=12, num_layers=2, dropout=0.0, tie=tie, **kw)
    return LSTMLanguageModel(config).double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randint(0, 57, (7, 3)), torch.randint(0, 57, (7, 3))


@pytest.mark.parametrize("tie", [True, False])
def test_fused_lm_loss_matches_lm_loss(tie: bool) -> None:
    model = _model(tie)
    inputs, targets = _batch()
    results = []
    for fn in (lm_loss, fused_lm_loss):
        model.zero_grad()
        loss, state = fn(model, inputs, targets, model.init_state(3))
        loss.backward()
        results.append((loss.detach(), state[-1][0].detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l1, h1, g1), (l2, h2, g2) = results
    torch.testing.assert_close(l2, l1, rtol=1e-12, atol=1e-12)
    assert torch.equal(h1, h2)
    assert g1.keys() == g2.keys()
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-10, atol=1e-12)


def test_augmented_kl_equals_the_formula_on_a_toy_case() -> None:
    # V = 3 words, d = 2: KL(softmax(L u / tau) || softmax(z / tau)) written out by hand.
    L = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    z = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([2, 0])
    tau = 2.0
    expected = 0.0
    for i in range(2):
        u = L[y[i]]
        p = [torch.exp(L[j] @ u / tau) for j in range(3)]
        p = [pj / sum(p) for pj in p]
        q = [torch.exp(z[i, j] / tau) for j in range(3)]
        q = [qj / sum(q) for qj in q]
        expected += sum(p[j] * torch.log(p[j] / q[j]) for j in range(3))
    torch.testing.assert_close(augmented_kl(z, y, L, tau), expected / 2, rtol=1e-12, atol=1e-12)


def test_real_loss_is_cross_entropy_plus_alpha_kl_and_the_target_distribution_is_constant() -> None:
    model = _model()
    inputs, targets = _batch()
    loss, _ = real_loss(0.7, 3.0)(model, inputs, targets, model.init_state(3))
    logits, _ = model(inputs, model.init_state(3))
    L = model.encoder.weight
    soft = F.softmax(L[targets.reshape(-1)] @ L.t() / 3.0, dim=-1)
    log_q = F.log_softmax(logits.reshape(-1, 57) / 3.0, dim=-1)
    kl = (soft * (soft.log() - log_q)).sum(-1).mean()
    ce = F.cross_entropy(logits.reshape(-1, 57), targets.reshape(-1))
    torch.testing.assert_close(loss, ce + 0.7 * kl, rtol=1e-12, atol=1e-12)
    # No gradient flows through the soft targets: the gradient equals that of the same loss
    # with them detached.
    model.zero_grad()
    loss.backward()
    got = model.encoder.weight.grad.clone()
    model.zero_grad()
    logits, _ = model(inputs, model.init_state(3))
    log_q = F.log_softmax(logits.reshape(-1, 57) / 3.0, dim=-1)
    ref = F.cross_entropy(logits.reshape(-1, 57), targets.reshape(-1)) + 0.7 * (soft.detach() * (soft.detach().log() - log_q)).sum(-1).mean()
    ref.backward()
    torch.testing.assert_close(got, model.encoder.weight.grad, rtol=1e-10, atol=1e-12)


def test_projection_penalty_is_squared_frobenius_norm_and_build_loss_adds_it() -> None:
    model = _model(projection=True)
    with torch.no_grad():
        model.projection.weight.copy_(torch.arange(144, dtype=torch.float64).view(12, 12) / 100)
    assert projection_penalty(model).item() == pytest.approx(sum((i / 100) ** 2 for i in range(144)), rel=1e-12)
    inputs, targets = _batch()
    base, _ = lm_loss(model, inputs, targets, model.init_state(3))
    total, _ = build_loss(LossConfig(projection_penalty=0.15))(model, inputs, targets, model.init_state(3))
    torch.testing.assert_close(total, base + 0.15 * projection_penalty(model), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"LSTMLanguageModel has no projection layer to regularise; build it with projection=True"):
        projection_penalty(_model())


def test_build_loss_picks_the_objective_and_rejects_bad_configs() -> None:
    assert build_loss(LossConfig()) is lm_loss
    assert build_loss(LossConfig(fused=True)) is fused_lm_loss
    with pytest.raises(ValueError, match=r"the 'real' loss needs the logits \(set fused=false\)"):
        LossConfig(kind="real", fused=True)
    with pytest.raises(ValueError, match=r"kind\n  Input should be 'ce' or 'real'"):
        LossConfig(kind="mse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tau\n  Input should be greater than 0"):
        LossConfig(tau=0.0)
