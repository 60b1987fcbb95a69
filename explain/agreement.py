"""Agreement of two models' explanations of the same texts: top-k word overlap and rank correlation."""

from __future__ import annotations

import numpy as np

from explain.attribution import Attribution, word_scores
from pipelines.metrics import MetricSpec

SPECS = {
    "top_k_overlap": MetricSpec("top_k_overlap", True, 0.0, 1.0,
                                "share of the k words with the highest attributions that both models pick"),
    "spearman": MetricSpec("spearman", True, -1.0, 1.0, "rank correlation of the two models' word attributions"),
}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); 0 when either side is constant."""
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def agreement(first: Attribution, second: Attribution, k: int = 3) -> dict[str, float]:
    """Compare two explanations of one text word by word (tokenizers may differ)."""
    words, a = word_scores(first.text, first.tokens, first.scores)
    _, b = word_scores(second.text, second.tokens, second.scores)
    k = max(1, min(k, len(words)))
    top_a, top_b = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    return {"top_k_overlap": len(top_a & top_b) / k, "spearman": spearman(a, b)}


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) if rows else float("nan") for key in SPECS}
