"""The translation task of the experiment engine: strict tables, the ties of each mode, the run
record (BLEU, chrF, sacrebleu signatures), self-contained checkpoints, BLEU after the last epoch
only, data-parallel batch splitting, and `tying compare` reports with BLEU/chrF columns."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import tying
from tying.cli.main import app
from tying.recipes import RecipeError, load_recipe, read_metrics, train_recipe
from tying.tasks.translation import TranslationBatch, TranslationTask, builtin_bitext, evaluate, load_translator, token_batches, train_subwords, translate
from tying.recipes import find_task

runner = CliRunner()
MODES = ["multi30k-none", "multi30k-decoder", "multi30k-three-way", "multi30k-joint"]


def test_the_task_is_built_in() -> None:
    assert find_task("translation") is TranslationTask
    assert [(m.name, m.direction, m.report) for m in TranslationTask.metrics] == [
        ("loss", "lower", False), ("bleu", "higher", True), ("chrf", "higher", True),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.tie='both'", r"model\.tie = 'both': Input should be 'none', 'decoder', 'three_way' or 'joint'"),
        ("data.joint_vocab=false", r"model\.tie='three_way' shares the source and target embeddings and needs data\.joint_vocab=true"),
        ("model.num_heads=3", r"num_heads=3 does not divide embedding_size=32"),
        ("eval.beam_size=0", r"eval\.beam_size = 0: Input should be greater than or equal to 1"),
        ("eval.beam=2", r"unknown key 'eval\.beam' \(known: beam_size, bleu_every_epoch, length_penalty\)"),
        ("train.warmup_steps=0", r"inverse_sqrt' needs warmup_steps >= 1"),
        ("data.vocab_size='big'", r"data\.vocab_size = 'big': Input should be a valid integer"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe("builtin-translation", [override])


def test_multi30k_recipes_differ_only_in_their_ties() -> None:
    recipes = [load_recipe(name) for name in MODES]
    assert [r.tables["model"].tie for r in recipes] == ["none", "decoder", "three_way", "joint"]  # type: ignore[attr-defined]
    for r in recipes:
        assert r.task == "translation" and r.schedule_epochs == 6 and r.paper == {}
        tables = {k: t.model_dump() for k, t in r.tables.items()}
        tables["model"] = {k: v for k, v in tables["model"].items() if k not in ("tie", "joint_size")}
        assert tables == {k: t.model_dump() for k, t in recipes[0].tables.items()} | {"model": tables["model"]}
    m, t, d = recipes[0].tables["model"], recipes[0].train, recipes[0].tables["data"]
    assert (m.embedding_size, m.num_heads, m.encoder_layers, m.decoder_layers, m.ffn_size) == (256, 4, 3, 3, 512)  # type: ignore[attr-defined]
    assert (d.vocab_size, d.joint_vocab, t.max_tokens, t.lr, t.betas, t.warmup_steps) == (6000, True, 2048, 1e-3, (0.9, 0.98), 400)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("tie", "joint_vocab", "groups"),
    [
        ("none", False, []),
        ("decoder", False, [["tgt_embed.weight", "output.weight"]]),
        ("three_way", True, [["src_embed.weight", "tgt_embed.weight", "output.weight"]]),
        ("joint", True, [["src_embed.weight", "tgt_embed.weight", "output.weight"]]),
    ],
)
def test_each_mode_builds_its_ties(tie: str, joint_vocab: bool, groups: list[list[str]]) -> None:
    recipe = load_recipe("builtin-translation", [f"model.tie={tie!r}", f"data.joint_vocab={str(joint_vocab).lower()}", "data.vocab_size=64"])
    task = recipe.make_task()
    data = task.load_data(None)
    model = task.build_model(data)
    assert [sorted(g.paths) for g in tying.find_ties(model)] == [sorted(g) for g in groups]
    assert data.subwords.joint is joint_vocab and model.src_embed.num_embeddings == data.subwords.source_size


def test_run_record_has_bleu_chrf_per_epoch_and_sacrebleu_signatures(translation_run: Path) -> None:
    record = read_metrics(translation_run)
    assert record is not None and record["task"] == "translation" and record["unit"] == "tokens"
    assert [sorted(k for k in h if k.startswith("valid_")) for h in record["history"]] == [["valid_bleu", "valid_chrf", "valid_loss"]] * 4
    losses = [h["valid_loss"] for h in record["history"]]
    assert losses == sorted(losses, reverse=True) and record["best_epoch"] == 4
    assert record["test"]["bleu"] > 50 and record["test"]["chrf"] > 70 and record["tokens_per_s"] > 0
    sig = record["data"]["sacrebleu"]
    assert sig["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|") and sig["chrf"].startswith("nrefs:1|")
    assert record["data"]["train"] == 2000 and record["data"]["subwords"] == {"joint": True, "source_size": 100, "target_size": 100}


def test_a_checkpoint_alone_translates_as_the_trained_model(translation_run: Path) -> None:
    model, subwords = load_translator(translation_run)  # the run folder: its best.safetensors
    assert [g.paths for g in tying.find_ties(model)] == [["src_embed.weight", "tgt_embed.weight", "output.weight"]]
    # The same model, rebuilt the way training built it, loaded from the same file.
    task = load_recipe("builtin-translation").make_task()
    data = task.load_data(None)
    trained = task.build_model(data)
    tying.load(trained, translation_run / "best.safetensors")
    bitext = builtin_bitext()
    lines = bitext.source("valid")[:20]
    assert translate(model, subwords, lines, beam_size=2) == translate(trained, data.subwords, lines, beam_size=2)
    scores = evaluate(model, subwords, bitext.source("test"), bitext.target("test"), beam_size=2)
    record = read_metrics(translation_run)
    assert record is not None and scores.bleu == record["test"]["bleu"] and scores.chrf == record["test"]["chrf"]


def test_bleu_after_the_last_epoch_only(tmp_path: Path) -> None:
    recipe = load_recipe("builtin-translation", ["train.epochs=2", "train.max_batches=10", "eval.bleu_every_epoch=false"])
    record = train_recipe(recipe, tmp_path / "run")
    assert [sorted(k for k in h if k.startswith("valid_")) for h in record["history"]] == [
        ["valid_loss"], ["valid_bleu", "valid_chrf", "valid_loss"],
    ]  # fmt: skip
    assert set(record["test"]) == {"loss", "bleu", "chrf"}


def test_split_batch_gives_each_rank_its_rows() -> None:
    task = load_recipe("builtin-translation").make_task()
    (batch,) = token_batches([[5, 3], [6, 7, 3], [8, 3], [9, 3], [5, 6, 3]], [[4], [5, 6], [7], [8], [9]], max_tokens=100)
    parts = [task.split_batch(batch, rank, 2) for rank in (0, 1)]
    assert [len(p.index) for p in parts] == [3, 2]
    for name in ("src", "tgt_in", "tgt_out", "index"):
        assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(batch, name))
    assert isinstance(parts[0], TranslationBatch)
    with pytest.raises(ValueError, match=r"a batch of 5 sentence pairs cannot be split over 8 ranks"):
        task.split_batch(batch, 0, 8)


def test_too_long_training_pairs_are_left_out() -> None:
    task = load_recipe("builtin-translation", ["model.max_positions=12"]).make_task()
    data = task.load_data(None)
    sub = train_subwords(builtin_bitext(), 100)
    n_long = sum(len(s) > 12 or len(t) >= 12 for s, t in zip(sub.encode_source(data.bitext.source("train")), sub.encode_target(data.bitext.target("train")), strict=True))  # fmt: skip
    assert 0 < data.skipped == n_long and len(data.source) == 2000 - n_long
    assert task.data_summary(data)["train_skipped_too_long"] == n_long


def test_compare_reports_bleu_and_chrf_and_plots_the_validation_loss(translation_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare"
    shutil.copytree(translation_run, out / "builtin-translation")  # finished: compare skips it
    decoder = tmp_path / "builtin-decoder.toml"
    decoder.write_text('base = "builtin-translation"\nname = "builtin-decoder"\n[model]\ntie = "decoder"\n[train]\nepochs = 2\nmax_batches = 10\n')
    doc = tmp_path / "RESULTS.md"
    result = runner.invoke(app, ["compare", "builtin-translation", str(decoder), "--out", str(out), "--doc", str(doc), "--name", "mt"])
    assert result.exit_code == 0, result.output
    report = (out / "mt.md").read_text()
    assert "| run | parameters | unique parameters | epochs | best valid BLEU | test BLEU | best valid chrF |" in report  # no paper values
    assert "Test BLEU is that of the epoch with the best validation loss." in report
    assert "![validation loss per epoch](mt-valid-loss.png)" in report and "![test BLEU against unique parameters](mt-test-vs-params.png)" in report
    assert (out / "mt-valid-loss.png").is_file() and (out / "mt-test-vs-params.png").is_file()
    assert "valid_bleu" in (out / "mt.csv").read_text().splitlines()[0]
    assert "<!-- tying compare: mt -->" in doc.read_text() and "builtin-decoder" in doc.read_text()


def test_a_vocabulary_larger_than_the_text_allows_is_a_recipe_error() -> None:
    task = load_recipe("builtin-translation", ["model.tie='decoder'", "data.joint_vocab=false", "data.vocab_size=100"]).make_task()
    with pytest.raises(RecipeError, match=r"data\.vocab_size = 100 does not fit corpus 'builtin': .*Please set it to a value <= 75"):
        task.load_data(None)


def test_tying_train_names_bad_bitext_folders_in_one_line(tmp_path: Path) -> None:
    uneven = tmp_path / "uneven"
    uneven.mkdir()
    for split in ("train", "valid", "test"):
        (uneven / f"{split}.en").write_text("a\nb\n")
        (uneven / f"{split}.de").write_text("a\n")
    for corpus, message in [
        (uneven, r"train\.en' has 2 lines but '.*train\.de' has 1"),
        (tmp_path / "absent", r"bitext folder '.*absent' does not exist; it must hold \{train,valid,test\}\.\{en,de\}"),
    ]:
        result = runner.invoke(app, ["train", "builtin-translation", "--set", f"data.corpus={str(corpus)!r}", "--out", str(tmp_path / "run")])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert re.search(message, result.stderr.replace("\n", " ")), result.stderr
    assert not (tmp_path / "run").exists()  # nothing written before the data is read
