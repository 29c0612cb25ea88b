"""Corpus BLEU and chrF with sacrebleu, on detokenised text.

BLEU (Papineni et al. 2002) and chrF (Popović 2015) depend on tokenisation, lower-casing and
smoothing; sacrebleu (Post 2018, arXiv 1804.08771) fixes them and prints a *signature* that
names every choice, so scores are comparable across papers. Hypotheses and references are
plain detokenised text (SentencePiece output decoded back to text, the raw Multi30k
references); sacrebleu's default ``13a`` tokenisation is applied inside the metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from tying._text import plural

__all__ = ["CorpusScores", "corpus_scores", "signatures"]


@dataclass(frozen=True)
class CorpusScores:
    """Corpus-level scores and the sacrebleu signatures that define them."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str


def corpus_scores(hypotheses: list[str], references: list[str]) -> CorpusScores:
    """BLEU and chrF of ``hypotheses`` against one reference each (sacrebleu defaults)."""
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError as exc:
        raise ImportError("BLEU and chrF need sacrebleu: pip install 'tying[experiments]'") from exc
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{plural(len(hypotheses), 'hypothesis', 'hypotheses')} but {plural(len(references), 'reference')}; they must pair up line by line"
        )
    bleu, chrf = BLEU(), CHRF()
    b, c = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
    return CorpusScores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))


def signatures() -> dict[str, str]:
    """sacrebleu's signatures of the scores :func:`corpus_scores` computes (one reference per
    line, default settings), for run records: ``{"bleu": ..., "chrf": ...}``."""
    scores = corpus_scores(["."], ["."])  # sacrebleu names the reference count only after scoring
    return {"bleu": scores.bleu_signature, "chrf": scores.chrf_signature}
