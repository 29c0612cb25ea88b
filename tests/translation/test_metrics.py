"""BLEU and chrF through tying.tasks.translation.corpus_scores equal sacrebleu's own corpus scores."""

from __future__ import annotations

import pytest
import sacrebleu

from tying.tasks.translation import corpus_scores

HYPOTHESES = ["Ein Mann fährt ein Fahrrad auf der Straße.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."]
REFERENCES = ["Ein Mann fährt Fahrrad auf einer Straße.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest eine Zeitung."]


def test_scores_equal_sacrebleus_corpus_values() -> None:
    scores = corpus_scores(HYPOTHESES, REFERENCES)
    assert scores.bleu == sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score
    assert scores.chrf == sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score
    assert 0.0 < scores.bleu < 100.0 and 0.0 < scores.chrf < 100.0
    assert scores.bleu == pytest.approx(47.16, abs=0.01) and scores.chrf == pytest.approx(79.62, abs=0.01)  # sacrebleu 2.6.0


def test_signatures_name_the_settings() -> None:
    scores = corpus_scores(HYPOTHESES, REFERENCES)
    assert scores.bleu_signature == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert scores.chrf_signature == f"nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{sacrebleu.__version__}"


def test_identical_text_scores_100_and_mismatched_lengths_are_named() -> None:
    perfect = corpus_scores(REFERENCES, REFERENCES)
    assert perfect.bleu == pytest.approx(100.0) and perfect.chrf == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        corpus_scores(HYPOTHESES[:2], REFERENCES)


def test_a_single_hypothesis_is_counted_in_the_singular() -> None:
    with pytest.raises(ValueError, match="^1 hypothesis but 3 references; they must pair up line by line$"):
        corpus_scores(HYPOTHESES[:1], REFERENCES)
