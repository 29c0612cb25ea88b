"""Translation model speed: training tokens/s against ``torch.nn.Transformer``, and beam search
against greedy decoding.

**Training.** Full steps (forward, loss, backward, Adam step) on the same token-budget batches,
interleaved; each model's median tokens/s over the repeats is printed, and every ratio is the
ratio of those printed medians:

* ``tying three_way``: :class:`tying.models.TranslationTransformer` with source = target
  embedding = output layer, label-smoothed loss through the fused tied head;
* ``tying none``: the same model untied (three matrices);
* ``nn.Transformer``: the reference, ``torch.nn.Transformer`` (pre-norm, batch-first) of the same
  sizes and the same dropouts (its one ``dropout`` also on attention weights and FFN activations) with separate embeddings, the same sinusoidal positions and embedding scale, an
  ``nn.Linear`` output layer and ``F.cross_entropy(..., label_smoothing=0.1)``; padding masks
  for the encoder and the cross-attention, a causal mask for the decoder.

The goal is tying three_way >= 1.0x the reference: the tie (and the tying library) must cost
nothing. Batches: sentence pairs with Multi30k's length spread (8 to 30 subword tokens) of random
ids, or with ``--data FOLDER`` the real training pairs of a Multi30k-layout folder under a joint
SentencePiece vocabulary of ``--vocab-size`` pieces.

**Decoding.** The same model sizes on the built-in English-German corpus
(:func:`tying.tasks.translation.builtin_bitext`), trained for ``--decode-steps`` steps so that outputs stop
where a trained model stops, then translating its test sentences in batches, beam search
(beam 4, length penalty 0.6) against greedy search, sentences/s; both decode incrementally
(key/value cache).

    python benchmarks/bench_translation.py           # a table and the PASS/FAIL goal line
    python benchmarks/bench_translation.py --quick   # small sizes, a smoke test
    OMP_NUM_THREADS=1 python benchmarks/bench_translation.py --data ~/tying-data/multi30k --speed-only

``--speed-only`` times the tying three_way model alone on ``--steps`` batches (after one warm-up
step) and prints its training tokens/s, by the wall clock and by the process's CPU time (which a
busy shared machine inflates less), and the seconds an epoch of those batches would take: the
figure to size a training run by.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, median, report_goals  # noqa: E402

from tying.tasks.translation import PAD_ID, TranslationBatch, builtin_bitext, read_bitext, token_batches, train_subwords  # noqa: E402
from tying.machine import describe_machine  # noqa: E402
from tying.models import TranslationConfig, TranslationTransformer  # noqa: E402
from tying.models.translation import sinusoidal_positions  # noqa: E402
from tying.tasks.translation import translate_ids, translation_loss  # noqa: E402

GOAL = 1.0  # tying three_way training tokens/s vs nn.Transformer


class TorchTransformerTranslator(nn.Module):
    """The reference: ``nn.Transformer`` with embeddings, positions and an output layer around it."""

    def __init__(self, c: TranslationConfig) -> None:
        super().__init__()
        self.config, d = c, c.embedding_size
        self.src_embed, self.tgt_embed = nn.Embedding(c.src_vocab_size, d), nn.Embedding(c.tgt_vocab_size, d)
        self.register_buffer("positions", sinusoidal_positions(c.max_positions, d), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        with warnings.catch_warnings():  # "enable_nested_tensor is True, but ... norm_first was True"
            warnings.simplefilter("ignore")
            self.transformer = nn.Transformer(
                d, c.num_heads, c.encoder_layers, c.decoder_layers, c.ffn_size, c.dropout, batch_first=True, norm_first=True
            )
        self.out = nn.Linear(d, c.tgt_vocab_size)

    def loss(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        scale = math.sqrt(self.config.embedding_size)
        s = self.drop(self.src_embed(src) * scale + self.positions[: src.shape[1]])
        t = self.drop(self.tgt_embed(tgt_in) * scale + self.positions[: tgt_in.shape[1]])
        pad = src == PAD_ID
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], device=src.device)
        h = self.transformer(s, t, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True)
        logits = self.out(h)
        return F.cross_entropy(
            logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=self.config.label_smoothing
        )


def synthetic_batches(vocab: int, pairs: int, max_tokens: int) -> list[TranslationBatch]:
    rng = random.Random(0)
    src = [[rng.randrange(4, vocab) for _ in range(rng.randint(8, 30))] + [3] for _ in range(pairs)]
    tgt = [[rng.randrange(4, vocab) for _ in range(rng.randint(8, 30))] for _ in range(pairs)]
    return token_batches(src, tgt, max_tokens=max_tokens, shuffle=True)


def real_batches(folder: str, vocab: int, max_tokens: int) -> tuple[list[TranslationBatch], int]:
    bitext = read_bitext(folder)
    subwords = train_subwords(bitext, vocab)
    src, tgt = subwords.encode_source(bitext.source("train")), subwords.encode_target(bitext.target("train"))
    return token_batches(src, tgt, max_tokens=max_tokens, shuffle=True), subwords.source_size


def train_steps(model: nn.Module, batches: list[TranslationBatch], opt: torch.optim.Optimizer) -> None:
    for batch in batches:
        loss = translation_loss(model, batch) if isinstance(model, TranslationTransformer) else model.loss(batch.src, batch.tgt_in, batch.tgt_out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def bench_training(config: TranslationConfig, batches: list[TranslationBatch], steps: int, repeats: int, quick: bool) -> int:
    """Print the training table and goal line; return the exit status (1: the goal failed)."""
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {
        "tying three_way": TranslationTransformer(config),
        "tying none": TranslationTransformer(TranslationConfig(**{**config.__dict__, "tie": "none"})),
        "nn.Transformer": TorchTransformerTranslator(config),
    }
    # Each repeat trains every model on the same next `steps` batches.
    chunks = [batches[(r * steps) % len(batches) :][:steps] for r in range(repeats + 1)]
    tokens = [sum(b.target_tokens for b in chunk) for chunk in chunks]
    cursor = {name: 0 for name in models}
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}

    def run(name: str):
        def step() -> None:
            train_steps(models[name], chunks[cursor[name]], opts[name])
            cursor[name] += 1

        return step

    times = interleaved({name: run(name) for name in models}, repeats)
    rate = {name: median([tokens[r + 1] / s for r, s in enumerate(ts)]) for name, ts in times.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    print(f"{'training':<16} | {'parameters':>10} | {'target tokens/s':>15} | {'vs nn.Transformer':>17}")
    print("-" * 68)
    for name in models:
        print(f"{name:<16} | {params[name]:>10,} | {rate[name]:>15,.0f} | {rate[name] / rate['nn.Transformer']:>16.2f}x")
    print(f"three_way vs none (same model untied): {rate['tying three_way'] / rate['tying none']:.2f}x")
    ratio = rate["tying three_way"] / rate["nn.Transformer"]
    return report_goals([(ratio >= GOAL, f"tying three_way {ratio:.2f}x nn.Transformer's training tokens/s >= {GOAL:.2f}x")], quick)


def speed_only(config: TranslationConfig, batches: list[TranslationBatch], steps: int) -> None:
    torch.manual_seed(0)
    model = TranslationTransformer(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_steps(model, batches[-1:], opt)  # warm-up
    timed = batches[:steps]
    wall, cpu = time.perf_counter(), time.process_time()
    train_steps(model, timed, opt)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens, epoch = sum(b.target_tokens for b in timed), sum(b.target_tokens for b in batches)
    print(f"tying three_way, {sum(p.numel() for p in model.parameters()):,} parameters: {steps} steps, {tokens:,} target tokens")
    print(f"  wall clock: {tokens / wall:,.0f} target tokens/s; CPU time: {tokens / cpu:,.0f} target tokens/s")
    print(f"  one epoch ({len(batches)} batches, {epoch:,} target tokens): {epoch / (tokens / wall):,.0f} s by the wall clock, {epoch / (tokens / cpu):,.0f} s by CPU time")


def bench_decoding(config: TranslationConfig, steps: int, repeats: int) -> None:
    bitext = builtin_bitext()
    subwords = train_subwords(bitext, 128)
    sizes = {**config.__dict__, "src_vocab_size": subwords.source_size, "tgt_vocab_size": subwords.target_size, "tie": "three_way"}
    torch.manual_seed(0)
    model = TranslationTransformer(TranslationConfig(**sizes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    batches = token_batches(subwords.encode_source(bitext.source("train")), subwords.encode_target(bitext.target("train")), max_tokens=2048, shuffle=True)
    start = time.perf_counter()
    train_steps(model, (batches * (steps // len(batches) + 1))[:steps], opt)
    trained = time.perf_counter() - start
    source = subwords.encode_source(bitext.source("test"))
    outputs: dict[str, list[list[int]]] = {}
    search = {"greedy": 1, "beam 4": 4}

    def run(name: str):
        return lambda: outputs.__setitem__(name, translate_ids(model, source, beam_size=search[name], max_tokens=2048))

    times = interleaved({name: run(name) for name in search}, repeats)
    length = {name: sum(len(o) for o in outs) / len(outs) for name, outs in outputs.items()}
    print(f"decoding {len(source)} built-in test sentences, model trained {steps} steps ({trained:.0f} s):")
    print(f"{'search':<8} | {'sentences/s':>11} | {'mean output tokens':>18}")
    print("-" * 44)
    rate = {name: len(source) / median(times[name]) for name in search}
    for name in search:
        print(f"{name:<8} | {rate[name]:>11.1f} | {length[name]:>18.1f}")
    print(f"beam 4 vs greedy: {rate['beam 4'] / rate['greedy']:.2f}x the sentences/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few steps, a smoke test")
    ap.add_argument("--data", help="Multi30k-layout folder: time real training batches (else synthetic)")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--embedding-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn-size", type=int, default=1024)
    ap.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per batch and side")
    ap.add_argument("--steps", type=int, default=4, help="training steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--decode-steps", type=int, default=150, help="training steps before the decoding benchmark")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-decoding", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="only the tying three_way model's training speed (see above)")
    args = ap.parse_args()
    if args.quick:
        args.vocab_size, args.embedding_size, args.layers, args.ffn_size, args.max_tokens = 1000, 64, 2, 128, 1024
        args.steps, args.repeats, args.decode_steps = 3, 3, 20
    print(f"machine: {describe_machine()}")
    if args.data:
        batches, vocab = real_batches(args.data, args.vocab_size, args.max_tokens)
        where = f"{args.data} train pairs, joint SentencePiece vocabulary"
    else:
        vocab = args.vocab_size
        batches, where = synthetic_batches(vocab, 4000, args.max_tokens), "synthetic pairs of 8-30 tokens"
    config = TranslationConfig(
        vocab, vocab, embedding_size=args.embedding_size, num_heads=args.heads, encoder_layers=args.layers,
        decoder_layers=args.layers, ffn_size=args.ffn_size, dropout=0.1,
        # nn.Transformer's one dropout acts everywhere; --speed-only times the model as it would train
        attention_dropout=0.0 if args.speed_only else 0.1, activation_dropout=0.0 if args.speed_only else 0.1,
    )  # fmt: skip
    print(
        f"d={config.embedding_size}, {args.layers}+{args.layers} layers, {args.heads} heads, FFN {args.ffn_size}, V={vocab}, "
        f"batches of <= {args.max_tokens} padded tokens ({where}), {args.steps} steps x {args.repeats} repeats"
    )
    if args.speed_only:
        speed_only(config, batches, args.steps)
        return
    status = 0
    if not args.skip_training:
        status = bench_training(config, batches, args.steps, args.repeats, args.quick)
        print()
    if not args.skip_decoding:
        bench_decoding(config, args.decode_steps, args.repeats)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
