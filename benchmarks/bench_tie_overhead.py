"""Overhead of ties declared with :mod:`tying` against the same ties written by hand.

Two cases, each timed in one process as full training steps (forward, loss, backward, SGD step),
interleaved; the table prints the median step time of each variant, and the overhead is the ratio
of those two printed medians:

* **shared tie**: the LSTM LM with ``tying.tie(model, "encoder.weight", "decoder.weight")`` vs the
  same model tied by hand (``model.decoder.weight = model.encoder.weight``). Both end as one
  Parameter object, so the expected overhead is zero; the benchmark checks it.
* **transposed tie**: a tied autoencoder whose decoder weight is ``tying.tie_transposed`` (a
  parametrization recomputing ``W.T`` as a view on each access) vs a hand-written decoder calling
  ``F.linear(z, W.t())``.

    python benchmarks/bench_tie_overhead.py          # prints a table and PASS/FAIL goal lines
    python benchmarks/bench_tie_overhead.py --quick  # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median, report_goals  # noqa: E402

import tying  # noqa: E402
from tying.machine import describe_machine  # noqa: E402
from tying.models import LSTMConfig, LSTMLanguageModel  # noqa: E402

GOAL = 0.02  # tying's overhead must stay within 2 %


def lstm_pair(vocab: int, size: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    declared = LSTMLanguageModel(LSTMConfig(vocab, size, size, 2, dropout=0.0, tie=True))
    by_hand = LSTMLanguageModel(LSTMConfig(vocab, size, size, 2, dropout=0.0, tie=False))
    by_hand.load_state_dict(declared.state_dict())
    by_hand.decoder.weight = by_hand.encoder.weight
    return declared, by_hand


def lstm_step(model: nn.Module, tokens: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    logits, _ = model(tokens[:-1], model.init_state(tokens.size(1)))
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class HandTiedAutoEncoder(nn.Module):
    """``x -> tanh(W x + b) -> W^T z + c``, the transpose written in ``forward``."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.enc = nn.Linear(d, h)
        self.dec_bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(self.enc(x)), self.enc.weight.t(), self.dec_bias)


class AutoEncoder(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.enc, self.dec = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(x)))


def ae_pair(d: int, h: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    declared = AutoEncoder(d, h)
    tying.tie_transposed(declared, "enc.weight", "dec.weight")
    with torch.no_grad():
        declared.dec.bias.zero_()
    by_hand = HandTiedAutoEncoder(d, h)
    by_hand.enc.load_state_dict(declared.enc.state_dict())
    return declared, by_hand


def ae_step(model: nn.Module, x: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    loss = F.mse_loss(model(x), x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args()
    vocab, size, batch, bptt = (500, 32, 4, 10) if args.quick else (10_000, 200, 20, 35)
    d, h, n = (64, 16, 32) if args.quick else (784, 256, 256)
    print(f"machine: {describe_machine()}")

    tokens = torch.randint(0, vocab, (bptt + 1, batch), generator=torch.Generator().manual_seed(0))
    declared, by_hand = lstm_pair(vocab, size)
    assert declared.decoder.weight is declared.encoder.weight and by_hand.decoder.weight is by_hand.encoder.weight
    opts = {m: torch.optim.SGD(m.parameters(), lr=0.1) for m in (declared, by_hand)}
    lstm = interleaved(
        {"tying.tie": lambda: lstm_step(declared, tokens, opts[declared]), "by hand": lambda: lstm_step(by_hand, tokens, opts[by_hand])},
        repeats=args.repeats,
        warmup=3,
    )

    x = torch.randn(n, d, generator=torch.Generator().manual_seed(1))
    t_declared, t_hand = ae_pair(d, h)
    ae_opts = {m: torch.optim.SGD(m.parameters(), lr=0.1) for m in (t_declared, t_hand)}
    ae = interleaved(
        {
            "tying.tie_transposed": lambda: ae_step(t_declared, x, ae_opts[t_declared]),
            "by hand": lambda: ae_step(t_hand, x, ae_opts[t_hand]),
        },
        repeats=args.repeats * 4,
        warmup=5,
    )
    tying.verify(declared)
    tying.verify(t_declared)

    rows = [
        (f"shared tie: {size}x2 LSTM LM, V={vocab}, {batch}x{bptt} tokens", median(lstm["tying.tie"]), median(lstm["by hand"])),
        (f"transposed tie: autoencoder {d}-{h}-{d}, batch {n}", median(ae["tying.tie_transposed"]), median(ae["by hand"])),
    ]
    print(f"{'case':<58} | {'tying ms':>9} {'by hand ms':>10} | {'overhead':>8}")
    print("-" * 93)
    for name, ours, hand in rows:
        print(f"{name:<58} | {ours * 1e3:>9.3f} {hand * 1e3:>10.3f} | {ours / hand - 1:>+8.1%}")
    print()
    goals = [(ours / hand - 1 <= GOAL, f"{name.split(':')[0]} overhead {ours / hand - 1:+.1%} <= {GOAL:.0%}") for name, ours, hand in rows]
    status = report_goals(goals, args.quick)
    if args.json:
        measured = [{"case": r[0], "tying_s": r[1], "by_hand_s": r[2], "overhead": r[1] / r[2] - 1} for r in rows]
        args.json.write_text(json.dumps({"machine": describe_machine(), "rows": measured}, indent=2))
    raise SystemExit(status)


if __name__ == "__main__":
    main()
