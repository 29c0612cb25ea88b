"""torch.compile on tied language models: compile time and training-step speed-up over eager.

For the tied LSTM LM (:mod:`tying.models.lstm`) and the tied Transformer LM
(:mod:`tying.models.transformer`), each with the plain cross-entropy of its logits and with the
fused tied output + cross-entropy (``TiedOutput.loss``, :mod:`tying.functional`), in one process:
the time of the first compiled training step
minus the median of later ones (the compile time: dynamo tracing, inductor code generation and C++
compilation of the forward and backward graphs, with an empty inductor cache unless
``--warm-cache``), then eager and compiled training steps (forward, cross-entropy, backward, AdamW step) interleaved, the median of
the repeats, and their ratio. The loss function is what is compiled (model and cross-entropy in one
graph, as nanoGPT compiles a model whose forward returns the loss); both variants start from the same
weights, and the tie is checked with ``tying.verify`` at the end. The graph count comes from
``torch._dynamo.explain``, and each distinct graph-break reason is printed under the table (the
fused loss adds none; dynamo breaks at ``nn.LSTM`` unless ``torch._dynamo.config.allow_rnn``).

    python benchmarks/bench_compile.py               # prints a table
    python benchmarks/bench_compile.py --quick --threads 1   # tiny sizes, a smoke test
    python benchmarks/bench_compile.py --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if "--warm-cache" not in sys.argv:  # before torch reads it: a cold compile, as a user's first run
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_compile_inductor_")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median  # noqa: E402

import tying  # noqa: E402
from tying.machine import describe_machine  # noqa: E402
from tying.models import LSTMConfig, LSTMLanguageModel, TransformerConfig, TransformerLanguageModel  # noqa: E402
from tying.nn import TiedOutput  # noqa: E402

# Each case builds a tied model, a batch of token ids and the loss of one step from the sizes.
SIZES = {
    "full": {"vocab": 10_000, "width": 256, "layers": 2, "batch": 16, "seq": 64, "heads": 4},
    "quick": {"vocab": 500, "width": 32, "layers": 1, "batch": 4, "seq": 16, "heads": 2},
}


Case = tuple[nn.Module, torch.Tensor, Callable[[nn.Module, torch.Tensor], torch.Tensor]]


def lstm_case(s: dict[str, int], fused: bool) -> Case:
    model = LSTMLanguageModel(
        LSTMConfig(vocab_size=s["vocab"], embedding_size=s["width"], hidden_size=s["width"], num_layers=s["layers"], dropout=0.0, tie=True)
    )
    tokens = torch.randint(0, s["vocab"], (s["seq"] + 1, s["batch"]))  # (T, B): sequence-first

    def loss(m: nn.Module, t: torch.Tensor) -> torch.Tensor:
        features, _ = m.features(t[:-1], m.init_state(t.shape[1]))
        return _head_loss(m.decoder, features, t[1:], fused)

    return model, tokens, loss


def transformer_case(s: dict[str, int], fused: bool) -> Case:
    model = TransformerLanguageModel(
        TransformerConfig(
            vocab_size=s["vocab"], context_size=s["seq"], embedding_size=s["width"], num_layers=s["layers"], num_heads=s["heads"], tie=True
        )
    )
    tokens = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1))  # (B, T)

    def loss(m: nn.Module, t: torch.Tensor) -> torch.Tensor:
        return _head_loss(m.lm_head, m.features(t[:, :-1]), t[:, 1:], fused)

    return model, tokens, loss


def _head_loss(head: TiedOutput, features: torch.Tensor, target: torch.Tensor, fused: bool) -> torch.Tensor:
    """Mean next-token cross-entropy: fused (no logits in memory) or of the logits."""
    if fused:
        return head.loss(features, target)
    logits = head(features)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def _step(model: nn.Module, tokens: torch.Tensor, loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> Callable[[], float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, tokens)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def measure(name: str, case: Callable[[dict[str, int], bool], Case], fused: bool, sizes: dict[str, int], repeats: int) -> dict[str, object]:
    """Compile time, eager and compiled step medians, the first step's loss difference and the graph breaks."""
    torch.manual_seed(0)
    eager_model, tokens, loss_fn = case(sizes, fused)
    compiled_model = copy.deepcopy(eager_model)  # the same weights, ties and tie spec
    eager = _step(eager_model, tokens, loss_fn)
    compiled = _step(compiled_model, tokens, torch.compile(loss_fn))
    eager_loss = eager()
    start = time.perf_counter()
    compiled_loss = compiled()  # traces and compiles the forward and backward graphs
    first = time.perf_counter() - start
    times = interleaved({"eager": eager, "compiled": compiled}, repeats=repeats)
    tying.verify(compiled_model)  # raises if compiling or stepping broke a tie
    explained = torch._dynamo.explain(loss_fn)(compiled_model, tokens)  # > 1 graph: graph breaks
    eager_s, compiled_s = median(times["eager"]), median(times["compiled"])
    return {
        "model": name,
        "loss": "fused" if fused else "logits+CE",
        "compile_s": first - compiled_s,
        "eager_step_s": eager_s,
        "compiled_step_s": compiled_s,
        "speedup": eager_s / compiled_s,
        "graphs": explained.graph_count,
        "breaks": sorted({"; ".join(line.strip() for line in r.reason.strip().splitlines()[:2]) for r in explained.break_reasons}),
        "first_step_loss_diff": abs(eager_loss - compiled_loss),
        "tie_groups": [g.paths for g in tying.find_ties(compiled_model)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    ap.add_argument("--warm-cache", action="store_true", help="use the default inductor cache (compile time of a repeat run)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core); 1 on a busy machine")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = SIZES["quick" if args.quick else "full"]
    print(f"machine: {describe_machine()}")
    print(f"sizes: {sizes}; inductor cache: {'default (warm)' if args.warm_cache else 'empty (cold)'}; {args.repeats} repeats")
    header = (
        f"{'model':>12} {'loss':>9} | {'compile s':>9} | {'eager step ms':>13} {'compiled ms':>11} | "
        f"{'speed-up':>8} | {'graphs':>6} | {'|loss diff|':>11}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name, case in (("LSTM", lstm_case), ("Transformer", transformer_case)):
        for fused in (False, True):
            row = measure(name, case, fused, sizes, args.repeats)
            rows.append(row)
            eager_ms, compiled_ms = row["eager_step_s"] * 1e3, row["compiled_step_s"] * 1e3  # type: ignore[operator]
            print(
                f"{name:>12} {row['loss']:>9} | {row['compile_s']:>9.2f} | {eager_ms:>13.2f} {compiled_ms:>11.2f} | "
                f"{eager_ms / compiled_ms:>8.2f} | {row['graphs']:>6} | {row['first_step_loss_diff']:>11.1e}",
                flush=True,
            )
    for row in rows:
        for reason in row["breaks"]:  # type: ignore[attr-defined]
            print(f"graph break, {row['model']} {row['loss']}: {reason}")
    if args.json:
        result = {"machine": describe_machine(), "sizes": sizes, "warm_cache": args.warm_cache, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
