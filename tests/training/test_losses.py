"""The fused LM loss equals the logits-based one, value and gradients, on the LSTM model."""

from __future__ import annotations

import torch

from tying.models import LSTMConfig, LSTMLanguageModel
from tying.training import fused_lm_loss, lm_loss


def test_fused_lm_loss_matches_lm_loss_for_tied_and_untied() -> None:
    for tie in (True, False):
        torch.manual_seed(0)
        model = LSTMLanguageModel(LSTMConfig(vocab_size=57, embedding_size=12, hidden_size=12, num_layers=2, dropout=0.0, tie=tie)).double()
        inputs, targets = torch.randint(0, 57, (7, 3)), torch.randint(0, 57, (7, 3))
        results = []
        for fn in (lm_loss, fused_lm_loss):
            model.zero_grad()
            loss, (h, c) = fn(model, inputs, targets, model.init_state(3))
            loss.backward()
            results.append((loss.detach(), h.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        (l1, h1, g1), (l2, h2, g2) = results
        torch.testing.assert_close(l2, l1, rtol=1e-12, atol=1e-12)
        assert torch.equal(h1, h2)
        assert g1.keys() == g2.keys()
        for name in g1:
            torch.testing.assert_close(g2[name], g1[name], rtol=1e-10, atol=1e-12)
