"""Faithfulness of attributions: AOPC comprehensiveness and sufficiency (DeYoung et al., 2020; ferret)."""

from __future__ import annotations

import math

import numpy as np

from explain.attribution import Attribution
from explain.predictor import Predictor
from pipelines.metrics import MetricSpec

FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)

SPECS = {
    "aopc_comprehensiveness": MetricSpec(
        "aopc_comprehensiveness", True, -1.0, 1.0,
        "drop in the predicted class probability when the top k% tokens are removed, averaged over k",
    ),
    "aopc_sufficiency": MetricSpec(
        "aopc_sufficiency", False, -1.0, 1.0,
        "drop in the predicted class probability when only the top k% tokens are kept, averaged over k",
    ),
}


def _real_units(attribution: Attribution) -> list[int]:
    return [i for i, t in enumerate(attribution.tokens) if t.strip()]


def _texts_for(attribution: Attribution, order: list[int]) -> tuple[list[str], list[str]]:
    """(texts without the top units, texts with only the top units) for every fraction in FRACTIONS."""
    units = attribution.tokens
    removed, kept = [], []
    for fraction in FRACTIONS:
        top = set(order[: max(1, math.ceil(fraction * len(order)))])
        removed.append("".join(u for i, u in enumerate(units) if i not in top))
        kept.append("".join(u for i, u in enumerate(units) if i in top or not u.strip()))
    return removed, kept


def faithfulness(predictor: Predictor, attributions: list[Attribution], scores: list[np.ndarray] | None = None
                 ) -> list[dict[str, float]]:
    """Per example: AOPC comprehensiveness and sufficiency of the given scores (default: the attributions')."""
    batch, plan = [], []
    for a, s in zip(attributions, scores or [a.scores for a in attributions], strict=True):
        real = _real_units(a)
        order = sorted(real, key=lambda i: -float(s[i]))
        removed, kept = _texts_for(a, order)
        plan.append((len(batch), a.predicted, a.probability))
        batch.extend(removed + kept)
    probabilities = predictor(batch) if batch else np.zeros((0, 1))
    n = len(FRACTIONS)
    results = []
    for start, target, original in plan:
        removed = probabilities[start : start + n, target]
        kept = probabilities[start + n : start + 2 * n, target]
        results.append({
            "aopc_comprehensiveness": float(np.mean(original - removed)),
            "aopc_sufficiency": float(np.mean(original - kept)),
        })
    return results


def random_baseline(predictor: Predictor, attributions: list[Attribution], draws: int = 3, seed: int = 0
                    ) -> list[dict[str, float]]:
    """The same metrics for random attributions (mean over draws): what an uninformative explainer gets."""
    rng = np.random.default_rng(seed)
    per_draw = [faithfulness(predictor, attributions, [rng.random(len(a.tokens)) for a in attributions])
                for _ in range(draws)]
    return [{key: float(np.mean([d[i][key] for d in per_draw])) for key in SPECS} for i in range(len(attributions))]


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) if rows else float("nan") for key in SPECS}
