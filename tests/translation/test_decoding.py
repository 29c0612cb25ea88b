"""Greedy and beam search: beam 1 is greedy, a wide beam is exhaustive search, the output
constraints, batching order, and text-level translate (blank lines, truncation warnings)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from tying.tasks.translation import builtin_bitext, train_subwords
from tying.models import TranslationConfig, TranslationTransformer
from tying.tasks.translation import TruncationWarning, beam_search, greedy_search, translate, translate_ids


def _model(vocab: int = 30, seed: int = 0, **changes) -> TranslationTransformer:
    torch.manual_seed(seed)
    config = TranslationConfig(vocab, vocab, embedding_size=16, num_heads=2, encoder_layers=1, decoder_layers=2, ffn_size=32, dropout=0.0, max_positions=40)
    return TranslationTransformer(TranslationConfig(**{**config.__dict__, **changes})).eval()


def _sources(n: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (n, 9), generator=g)
    for i in range(n):  # ragged: row i has 9 - i % 4 tokens, the last one </s>
        length = 9 - i % 4
        src[i, length - 1], src[i, length:] = 3, 0
    return src


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["none", "joint"])
def test_beam_of_one_is_greedy(seed: int, mode: str) -> None:
    model = _model(seed=seed, tie=mode)
    src = _sources(6, 30, seed)
    greedy = greedy_search(model, src, max_length=12)
    assert beam_search(model, src, beam_size=1, max_length=12) == greedy
    assert beam_search(model, src, beam_size=1, length_penalty=1.5, max_length=12) == greedy


def _exhaustive(model: TranslationTransformer, src: torch.Tensor, max_length: int, alpha: float) -> list[int]:
    """The output with the best length-normalised log-probability among all outputs of at most
    ``max_length`` tokens, by scoring each one with teacher forcing."""
    c = model.config
    words = [w for w in range(c.tgt_vocab_size) if w not in (c.pad_id, c.bos_id, c.eos_id)]
    best, best_score = None, float("-inf")
    for n in range(max_length + 1):
        for seq in itertools.product(words, repeat=n):
            tgt_in = torch.tensor([[c.bos_id, *seq]])
            logits = model(src, tgt_in)[0].float()
            logits[:, [c.pad_id, c.bos_id]] = float("-inf")
            log_probs = logits.log_softmax(-1)
            total = sum(log_probs[t, w].item() for t, w in enumerate(seq))
            total += 0.0 if n == max_length else log_probs[n, c.eos_id].item()  # forced </s> at max_length
            score = total / ((5 + n + 1) / 6) ** alpha
            if score > best_score:
                best, best_score = list(seq), score
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_a_beam_wider_than_all_outputs_finds_the_best_one(seed: int, alpha: float) -> None:
    model = _model(vocab=7, seed=seed, tie="three_way")  # 4 words besides <pad>, <s>, </s>: 85 outputs of <= 3 words
    src = _sources(2, 7, seed)
    found = beam_search(model, src, beam_size=64, length_penalty=alpha, max_length=3)
    assert found == [_exhaustive(model, src[i : i + 1, : int((src[i] != 0).sum())], 3, alpha) for i in range(2)]


def test_outputs_hold_no_special_tokens_and_respect_max_length() -> None:
    model = _model(seed=1)
    src = _sources(5, 30, 1)
    for out in (greedy_search(model, src, max_length=4), beam_search(model, src, beam_size=3, max_length=4)):
        assert all(len(o) <= 4 and not {0, 2, 3} & set(o) for o in out)


def test_translate_ids_returns_input_order_whatever_the_batching() -> None:
    model = _model(seed=2)
    src = _sources(7, 30, 2)
    source = [row[row != 0].tolist() for row in src]
    one_by_one = [greedy_search(model, torch.tensor([s]), max_length=10)[0] for s in source]
    assert translate_ids(model, source, beam_size=1, max_length=10, max_tokens=20) == one_by_one
    assert model.training is False
    model.train()
    translate_ids(model, source[:1], beam_size=2, max_length=3)
    assert model.training is True  # restored


def test_bad_decoding_arguments_are_named() -> None:
    model = _model()
    src = _sources(1, 30, 0)
    with pytest.raises(ValueError, match="beam_size must be at least 1, got 0"):
        beam_search(model, src, beam_size=0)
    with pytest.raises(ValueError, match=r"max_length must be in \[0, 39\] \(max_positions - 1\), got 40"):
        greedy_search(model, src, max_length=40)


def test_translate_keeps_blank_lines_and_warns_about_truncated_ones(tmp_path) -> None:
    subwords = train_subwords(builtin_bitext(), 128, cache_dir=tmp_path)
    model = _model(vocab=subwords.source_size, max_positions=12)
    long_line = " ".join(["A man holds a red ball in the park."] * 3)
    lines = ["A man holds a ball.", "", "   ", long_line, "The dog sees a book."]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = translate(model, subwords, lines, beam_size=2, max_length=5)
    assert len(out) == 5 and out[1] == out[2] == "" and all(isinstance(o, str) for o in out)
    messages = [str(w.message) for w in caught if issubclass(w.category, TruncationWarning)]
    assert len(messages) == 1 and messages[0].startswith("line 4: ") and "max_positions=12" in messages[0]
    # The truncated line translates as its first max_positions - 1 pieces do.
    first_pieces = subwords._src.decode(subwords.encode_source([long_line])[0][:11])
    assert translate(model, subwords, [first_pieces], beam_size=2, max_length=5) == [out[3]]
