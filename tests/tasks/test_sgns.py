"""The SGNS task: recipes build the untied, tied, reflected and gensim models; gensim's evaluators
score vectors and refuse a word list with no overlap; exported vectors load in gensim with the
same similarities; a short run beats the untrained model's WordSim-353 score and the gensim peer
trains, checkpoints and scores like our models."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import tying
from tying.models import SkipGram, reflection_signs
from tying.recipes import RecipeError, expand_seeds, load_recipe, read_metrics, run_recipes
from tying.recipes.report import write_report
from tying.tasks.sgns import export_checkpoint, export_vectors, keyed_vectors, similarity_scores, word_pair_spearman
from tying.tasks.sgns.evaluation import analogy_accuracy, gensim_data

gensim = pytest.importorskip("gensim")

RECIPES = ["sgns-untied", "sgns-untied-pair", "sgns-tied", "sgns-reflected", "sgns-reflected-f25", "sgns-reflected-f75", "sgns-gensim"]
TINY = ["data.min_count=1", "data.sample=0.0", "model.dim=16", "train.batch_words=200"]


def ws353_corpus(folder: Path, lines: int = 2000, seed: int = 0) -> Path:
    """Sentences whose words come from WordSim-353: a topic per pair rated 7 or more (its two
    words) and one per word of a pair rated 3 or less, each topic with filler words of its own,
    so that words of a related pair share contexts and words of an unrelated one do not."""
    pairs = [line.split("\t") for line in Path(gensim_data("wordsim353.tsv")).read_text().splitlines() if not line.startswith("#")]
    topics: list[list[str]] = []
    for a, b, score in pairs:
        if a != b and float(score) >= 7:
            topics.append([a.lower(), b.lower()])
        elif float(score) <= 3:
            topics += [[a.lower()], [b.lower()]]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", lines), ("valid", 60), ("test", 60)):
        text = []
        for _ in range(n):
            t = rng.randrange(len(topics))
            words = topics[t] * 2 + [f"t{t}x{j}" for j in range(3)]
            text.append(" ".join(rng.choice(words) for _ in range(8)))
        (folder / f"{split}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ws353_corpus(tmp_path_factory.mktemp("ws") / "ws353")


def test_recipes_build_untied_tied_reflected_and_gensim_models(corpus: Path) -> None:
    recipes = [load_recipe(n, [f"data.corpus={str(corpus)!r}", *TINY]) for n in RECIPES]
    data = recipes[0].make_task().load_data(None)
    v = len(data.vocab.words)
    models = {r.name: r.make_task().build_model(data) for r in recipes}
    counts = {n: tying.summary(m).unique_parameters for n, m in models.items()}
    assert counts["sgns-untied"] == counts["sgns-gensim"] == 2 * v * 16
    assert counts["sgns-tied"] == counts["sgns-reflected"] == counts["sgns-reflected-f25"] == v * 16
    for name, fraction in (("sgns-reflected-f25", 0.25), ("sgns-reflected", 0.5), ("sgns-reflected-f75", 0.75)):
        (tie,) = tying.get_spec(models[name]).ties
        assert tie.transform == "reflect" and list(dict(tie.params)["signs"]) == reflection_signs(16, fraction)
    assert tying.get_spec(models["sgns-tied"]).ties[0].describe() == "words.weight -> contexts.weight"
    # The ablation's fraction 0 is sgns-tied: a reflection with no sign negative computes the same losses.
    task = recipes[0].make_task()
    built = []
    for name, overrides in (("sgns-tied", []), ("sgns-reflected", ["model.negative_fraction=0.0"])):
        torch.manual_seed(0)  # as the engine seeds before building
        built.append(load_recipe(name, [f"data.corpus={str(corpus)!r}", *TINY, *overrides]).make_task().build_model(data))
    batch = task.train_batches(data, 1)[0]
    assert torch.equal(built[0].words.weight, built[1].words.weight)
    losses = [task.step(m, batch, None).loss for m in built]
    assert torch.equal(losses[0], losses[1])
    losses[0].backward(), losses[1].backward()
    assert torch.equal(built[0].words.weight.grad.to_dense(), built[1].words.weight.grad.to_dense())
    assert load_recipe("sgns-untied").tables["train"].lr_schedule == "linear"  # type: ignore[attr-defined]


def test_bad_settings_are_refused_naming_the_key(corpus: Path) -> None:
    with pytest.raises(RecipeError, match=r"model\.negative_fraction = 2\.0: Input should be less than or equal to 1"):
        load_recipe("sgns-reflected", ["model.negative_fraction=2.0"])
    with pytest.raises(RecipeError, match=r"data\.noise = 'word': Input should be 'pair' or 'centre'"):
        load_recipe("sgns-untied", ["data.noise='word'"])
    task = load_recipe("sgns-gensim", [f"data.corpus={str(corpus)!r}", "model.tie='tied'", *TINY]).make_task()
    with pytest.raises(ValueError, match=r"model\.tie = 'tied': gensim's Word2Vec keeps its context vectors untied"):
        task.build_model(task.load_data(None))


def test_a_word_list_with_no_overlap_is_a_one_line_error(tmp_path: Path) -> None:
    kv = keyed_vectors(["zzq", "qqz"], torch.randn(2, 3))
    for check, what in ((word_pair_spearman, "word pair has both words"), (analogy_accuracy, "analogy question has all four words")):
        file = gensim_data("wordsim353.tsv" if check is word_pair_spearman else "questions-words.txt")
        with pytest.raises(ValueError, match=f"no {what} among the 2 words of the vocabulary") as error:
            check(kv, file)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"vectors of shape \[2, 3\] for 3 words; need one row per word"):
        keyed_vectors(["a", "b", "c"], torch.randn(2, 3))


@pytest.mark.parametrize("binary", [False, True])
def test_exported_vectors_load_in_gensim_with_the_same_similarities(tmp_path: Path, binary: bool) -> None:
    words = ["king", "queen", "man", "woman", "paris"]
    vectors = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    export_vectors(words, vectors, tmp_path / "v.bin", binary=binary)
    loaded = gensim.models.KeyedVectors.load_word2vec_format(str(tmp_path / "v.bin"), binary=binary)
    assert loaded.index_to_key == words
    ours = torch.nn.functional.cosine_similarity(vectors[0], vectors[1], dim=0).item()
    assert loaded.similarity("king", "queen") == pytest.approx(ours, abs=1e-5 if binary else 1e-4)
    assert [w for w, _ in loaded.most_similar("king", topn=4)] == [w for w, _ in keyed_vectors(words, vectors).most_similar("king", topn=4)]


@pytest.mark.slow
def test_a_short_run_beats_the_untrained_model_and_the_gensim_peer_runs_alike(corpus: Path, tmp_path: Path) -> None:
    overrides = [f"data.corpus={str(corpus)!r}", *TINY, "train.epochs=3"]
    runs = expand_seeds([load_recipe(n, overrides) for n in ("sgns-untied", "sgns-reflected", "sgns-gensim")])
    run_recipes(runs, tmp_path)
    task = runs[0].recipe.make_task()
    data = task.load_data(None)
    untrained = similarity_scores(keyed_vectors(data.vocab.words, SkipGram(task.build_model(data).config).words.weight), analogies=False)
    for name in ("sgns-untied", "sgns-reflected", "sgns-gensim"):
        record = read_metrics(tmp_path / name)
        assert record is not None and record["unit"] == "words"
        assert record["test"]["ws353"] > untrained["ws353"] + 0.2, (name, record["test"], untrained)
        assert record["test"]["ws353_oov"] == untrained["ws353_oov"] and 0 <= record["test"]["analogy_oov"] <= 100
        history = [h["valid_loss"] for h in record["history"]]
        assert history[-1] < history[0]
    # The checkpoint alone exports: the vocabulary is in its header, W is "words.weight" in every variant.
    for name in ("sgns-reflected", "sgns-gensim"):
        kv = export_checkpoint(tmp_path / name / "best.safetensors", tmp_path / f"{name}.txt")
        loaded = gensim.models.KeyedVectors.load_word2vec_format(str(tmp_path / f"{name}.txt"))
        assert loaded.index_to_key == data.vocab.words
        assert loaded.similarity("tiger", "cat") == pytest.approx(kv.similarity("tiger", "cat"), abs=1e-4)
    _, files = write_report(runs, tmp_path, "tiny sgns", report="tiny")
    assert {"tiny-scores.png"} <= {Path(f).name for f in files}


def test_report_figures_draw_scores_per_run_and_against_the_fraction(tmp_path: Path) -> None:
    from tying.recipes.plots import figure_file
    from tying.tasks.sgns import SGNSTask

    def record(name: str, seed: int, tie: str, fraction: float, ws: float, kind: str = "tying") -> dict[str, object]:
        model = {"kind": kind, "dim": 8, "tie": tie, "negative_fraction": fraction, "sign_seed": 0}
        test = {"loss": 9.0, "ws353": ws, "simlex": ws / 2, "analogy": 10 * ws, "analogy_oov": 50.0}
        return {"task": "sgns", "name": f"{name}-seed{seed}", "recipe": {"name": name, "model": model}, "test": test}

    records = [
        record(n, s, tie, f, ws + s / 100, kind)
        for n, tie, f, ws, kind in [("tied", "tied", 0.5, 0.1, "tying"), ("r-f50", "reflected", 0.5, 0.3, "tying"),
                                    ("untied", "none", 0.5, 0.32, "tying"), ("gensim", "none", 0.5, 0.33, "gensim")]
        for s in (1, 2)
    ]  # fmt: skip
    figures = SGNSTask.report_figures(records)
    assert [f.name for f in figures] == ["scores", "fraction"]
    for f in figures:
        assert figure_file(tmp_path / f"{f.name}.png", f.draw).stat().st_size > 1000
    assert [f.name for f in SGNSTask.report_figures(records[4:])] == ["scores"]  # one fraction: no fraction plot
    assert SGNSTask.report_figures([{"task": "lm", "test": {}}]) == []
