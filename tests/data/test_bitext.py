"""Bitext reading, the built-in corpus, SentencePiece vocabularies and their cache, and
token-budget batching."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tying.tasks.translation import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Bitext,
    BitextError,
    builtin_bitext,
    read_bitext,
    subword_cache_dir,
    token_batches,
    train_subwords,
)
from tying.tasks.translation import subword as subword_module


def _write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_bytes(text.encode() if isinstance(text, str) else text)
    return folder


def _bitext_folder(folder: Path, train_en: str = "a b\nc d\n", train_de: str = "x y\nz w\n") -> Path:
    return _write(folder, train_en=train_en, train_de=train_de, valid_en="a\n", valid_de="x\n", test_en="b\n", test_de="y\n")


# --------------------------------------------------------------------------- reading


def test_read_bitext_pairs_lines_per_split(tmp_path: Path) -> None:
    b = read_bitext(_bitext_folder(tmp_path / "d"))
    assert b.source("train") == ["a b", "c d"] and b.target("train") == ["x y", "z w"] and b.target("test") == ["y"]
    assert repr(b) == f"Bitext({str(tmp_path / 'd')!r}, en->de, train=2, valid=1, test=1)"
    with pytest.raises(KeyError, match=r"has no split 'dev'; it has \['test', 'train', 'valid'\]"):
        b.source("dev")


def test_read_bitext_names_missing_unequal_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bitext folder .*nowhere' does not exist"):
        read_bitext(tmp_path / "nowhere")
    folder = _bitext_folder(tmp_path / "d")
    (folder / "test.de").unlink()
    with pytest.raises(FileNotFoundError, match=r"bitext file\(s\) .*test\.de' missing"):
        read_bitext(folder)
    _write(folder, test_de="y\nextra\n")
    with pytest.raises(BitextError, match=r"test\.en' has 1 lines but .*test\.de' has 2; line i of each must translate the other"):
        read_bitext(folder)
    _write(folder, test_de=b"\xff\xfe\n")
    with pytest.raises(BitextError, match=r"test\.de' is not UTF-8 text \(byte 0"):
        read_bitext(folder)


def test_builtin_bitext_is_reproducible_german() -> None:
    a, b = builtin_bitext(), builtin_bitext()
    assert a == b and a != builtin_bitext(seed=1)
    assert [len(a.source(s)) for s in ("train", "valid", "test")] == [2000, 100, 100]
    assert all(s.endswith(".") and t.endswith(".") for s, t in zip(a.source("train"), a.target("train"), strict=True))
    pairs = dict(zip(a.source("train"), a.target("train"), strict=True))
    assert pairs.get("Two men throw a small dog in the snow.", "Zwei Männer werfen einen kleinen Hund im Schnee.") == (
        "Zwei Männer werfen einen kleinen Hund im Schnee."
    )


def test_multi30k_split_sizes(shared_data: Path) -> None:
    b = read_bitext(shared_data / "multi30k")
    assert [len(b.source(s)) for s in ("train", "valid", "test")] == [29000, 1014, 1000]


# --------------------------------------------------------------------------- subwords


def test_joint_subwords_round_trip_and_reserve_the_special_ids(tmp_path: Path) -> None:
    bitext = builtin_bitext()
    sw = train_subwords(bitext, 128, cache_dir=tmp_path)
    assert sw.joint and sw.source_size == sw.target_size == 128
    assert [sw._src.id_to_piece(i) for i in (PAD_ID, 1, BOS_ID, EOS_ID)] == ["<pad>", "<unk>", "<s>", "</s>"]
    src = sw.encode_source(bitext.source("test"))
    assert all(ids[-1] == EOS_ID and EOS_ID not in ids[:-1] for ids in src)
    assert sw.decode_target(sw.encode_target(bitext.target("test"))) == bitext.target("test")
    assert sw.decode_target([[BOS_ID, *sw.encode_target(["Ein Mann."])[0], EOS_ID, PAD_ID]]) == ["Ein Mann."]


def test_separate_subwords_have_one_model_per_language(tmp_path: Path) -> None:
    sw = train_subwords(builtin_bitext(), 60, joint=False, cache_dir=tmp_path)
    assert not sw.joint and sw.source_proto != sw.target_proto
    assert "ä" not in sw._src.encode("Männer", out_type=str)[0] and sw.decode_target(sw.encode_target(["Männer."])) == ["Männer."]
    assert len(list(tmp_path.glob("*.model"))) == 2


def test_subwords_come_from_train_only_and_are_cached_by_their_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = builtin_bitext()
    first = train_subwords(base, 100, cache_dir=tmp_path)
    # Other valid/test text: the same model, read from the cache without training.
    splits = {**base.splits, "valid": (["Quixotic zebras."], ["Quixotische Zebras."]), "test": (["Jazz."], ["Jazz."])}
    calls = []
    real_train = subword_module._sentencepiece().SentencePieceTrainer.train
    monkeypatch.setattr(subword_module._sentencepiece().SentencePieceTrainer, "train", lambda **kw: calls.append(kw) or real_train(**kw))
    again = train_subwords(Bitext("other", "en", "de", splits), 100, cache_dir=tmp_path)
    assert again.source_proto == first.source_proto and calls == []
    # Other training text or options: a new model.
    train_subwords(base, 90, cache_dir=tmp_path)
    train_subwords(builtin_bitext(seed=1), 100, cache_dir=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.model"))) == 3


def test_the_cache_is_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TYING_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert subword_cache_dir() == tmp_path / "xdg" / "tying" / "subwords"
    monkeypatch.setenv("TYING_CACHE_DIR", str(tmp_path / "user"))
    assert subword_cache_dir() == tmp_path / "user" / "subwords"


def test_nothing_is_written_into_the_corpus_folder_writable_or_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TYING_CACHE_DIR", str(tmp_path / "user"))
    base = builtin_bitext()
    files = {f"{split}_{lang}": "\n".join(lines) + "\n" for split in ("train", "valid", "test") for lang, lines in (("en", base.source(split)), ("de", base.target(split)))}
    # Read-only by its mode or not: root (as the tests run) could write into either, so what is
    # checked is that nothing was, not that writing failed.
    for mode in (0o755, 0o555):
        folder = _write(tmp_path / f"corpus-{mode:o}", **files)
        before = sorted(p.name for p in folder.rglob("*"))
        os.chmod(folder, mode)
        try:
            train_subwords(read_bitext(folder), 100)
        finally:
            os.chmod(folder, 0o755)
        assert sorted(p.name for p in folder.rglob("*")) == before
    assert len(list((tmp_path / "user" / "subwords").glob("*.model"))) == 1  # one model for the same text, wherever it lies


def test_impossible_vocabulary_sizes_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot train a SentencePiece vocabulary with \{'vocab_size': 5000, .*Vocabulary size too high"):
        train_subwords(builtin_bitext(), 5000, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"vocab_size must be at least 8 \(4 special pieces and some text\), got 4"):
        train_subwords(builtin_bitext(), 4, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="model_type must be 'unigram' or 'bpe', got 'word'"):
        train_subwords(builtin_bitext(), 100, model_type="word", cache_dir=tmp_path)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- batches


lengths = st.lists(st.tuples(st.integers(1, 30), st.integers(0, 30)), min_size=1, max_size=60)


@given(lengths, st.integers(8, 200), st.booleans(), st.integers(0, 3))
def test_token_batches_hold_every_pair_once_within_the_budget(pairs: list[tuple[int, int]], budget: int, shuffle: bool, seed: int) -> None:
    source = [[5 + i % 7] * (s - 1) + [EOS_ID] for i, (s, _) in enumerate(pairs)]
    target = [[6 + i % 5] * t for i, (_, t) in enumerate(pairs)]
    batches = token_batches(source, target, max_tokens=budget, shuffle=shuffle, seed=seed)
    assert sorted(i for b in batches for i in b.index.tolist()) == list(range(len(pairs)))
    for b in batches:
        rows = len(b.index)
        assert rows == 1 or rows * max(b.src.shape[1], b.tgt_in.shape[1]) <= budget
        for r, i in enumerate(b.index.tolist()):
            s, t = len(source[i]), len(target[i])
            assert b.src[r, :s].tolist() == source[i] and (b.src[r, s:] == PAD_ID).all()
            assert b.tgt_in[r, : t + 1].tolist() == [BOS_ID, *target[i]] and (b.tgt_in[r, t + 1 :] == PAD_ID).all()
            assert b.tgt_out[r, : t + 1].tolist() == [*target[i], EOS_ID] and (b.tgt_out[r, t + 1 :] == PAD_ID).all()
        assert b.target_tokens == sum(len(target[i]) + 1 for i in b.index.tolist())
        assert torch.equal(b.src_mask, b.src != PAD_ID)


def test_token_batches_order_is_sorted_or_seeded() -> None:
    source = [[4] * (1 + i % 9) + [EOS_ID] for i in range(50)]
    target = [[4] * (i % 5) for i in range(50)]
    plain = token_batches(source, target, max_tokens=40)
    widths = [b.src.shape[1] for b in plain]
    assert widths == sorted(widths)
    order = lambda bs: [b.index.tolist() for b in bs]  # noqa: E731
    assert order(token_batches(source, target, max_tokens=40, shuffle=True, seed=3)) == order(
        token_batches(source, target, max_tokens=40, shuffle=True, seed=3)
    )
    assert order(token_batches(source, target, max_tokens=40, shuffle=True, seed=3)) != order(
        token_batches(source, target, max_tokens=40, shuffle=True, seed=4)
    )
    only_sources = token_batches(source, max_tokens=40)
    assert all(b.tgt_in is None and b.tgt_out is None and b.target_tokens == 0 for b in only_sources)


def test_token_batches_name_bad_input() -> None:
    with pytest.raises(ValueError, match="sentence pair 1 has 6 source / 1 target tokens, more than max_length=5"):
        token_batches([[4, EOS_ID], [4, 4, 4, 4, 4, EOS_ID]], [[], []], max_length=5)
    with pytest.raises(ValueError, match="source sentence 0 is empty"):
        token_batches([[]])
    with pytest.raises(ValueError, match="2 source sentences but 1 target sentences"):
        token_batches([[EOS_ID], [EOS_ID]], [[]])
    with pytest.raises(ValueError, match="max_tokens must be positive, got 0"):
        token_batches([[EOS_ID]], max_tokens=0)
