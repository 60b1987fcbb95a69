"""Plausibility of attributions: agreement with human rationales (ERASER, DeYoung et al., 2020; ferret)."""

from __future__ import annotations

import numpy as np

from explain.attribution import Attribution, word_scores
from pipelines.metrics import MetricSpec

SPECS = {
    "token_auprc": MetricSpec("token_auprc", True, 0.0, 1.0,
                              "average precision of the words ranked by attribution against the human rationale"),
    "token_f1_top_k": MetricSpec("token_f1_top_k", True, 0.0, 1.0,
                                 "F1 of the k highest-scored words against the rationale (k = rationale size)"),
    "iou_f1": MetricSpec("iou_f1", True, 0.0, 1.0,
                         "F1 of predicted spans (runs of the top-k words) matching a rationale span at IOU >= 0.5"),
}

Span = tuple[int, int]


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Average precision as sklearn computes it: precision at each distinct score (ties grouped), weighted by
    the recall gained there."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    ranked, hits = np.asarray(scores, float)[order], np.cumsum(np.asarray(relevant, bool)[order])
    last = np.r_[np.diff(ranked) != 0, True]  # the last position of each group of tied scores
    tp, seen = hits[last], np.flatnonzero(last) + 1
    return float(np.sum(np.diff(np.r_[0.0, tp / tp[-1]]) * tp / seen))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k highest scores (ties broken by position)."""
    mask = np.zeros(len(scores), bool)
    mask[np.argsort(-np.asarray(scores, float), kind="stable")[:k]] = True
    return mask


def spans(mask: np.ndarray) -> list[Span]:
    """Maximal runs of selected positions as [start, end) word spans."""
    edges = np.diff(np.r_[0, np.asarray(mask, int), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _iou(a: Span, b: Span) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (a[1] - a[0] + b[1] - b[0] - inter)


def iou_f1(predicted: list[Span], gold: list[Span], threshold: float = 0.5) -> float:
    """ERASER's IOU F1 for one example: a predicted span counts when its best IOU with a gold span reaches
    the threshold; precision over predicted spans, recall over gold spans."""
    if not predicted or not gold:
        return 0.0
    tp = sum(max(_iou(p, g) for g in gold) >= threshold for p in predicted)
    precision, recall = tp / len(predicted), tp / len(gold)
    return 2 * precision * recall / (precision + recall) if tp else 0.0


def plausibility_scores(word_scores: np.ndarray, rationale: np.ndarray) -> dict[str, float]:
    """The three metrics for one example's word scores against its 0/1 rationale (NaN when it marks no word)."""
    s, r = np.asarray(word_scores, float), np.asarray(rationale).astype(bool)
    if len(s) != len(r):
        raise ValueError(f"{len(s)} word scores for a rationale of {len(r)} words")
    k = int(r.sum())
    if k == 0:
        return {key: float("nan") for key in SPECS}
    chosen = top_k(s, k)
    overlap = int((chosen & r).sum())
    precision, recall = overlap / int(chosen.sum()), overlap / k
    return {
        "token_auprc": average_precision(s, r),
        "token_f1_top_k": 2 * precision * recall / (precision + recall) if overlap else 0.0,
        "iou_f1": iou_f1(spans(chosen), spans(r)),
    }


def plausibility(attributions: list[Attribution], rationales: list[np.ndarray | None],
                 scores: list[np.ndarray] | None = None) -> list[dict[str, float] | None]:
    """Per example: plausibility of the given unit scores (default: the attributions'), summed into whitespace
    words. A rationale shorter than the text covers its first words (the first text of a pair); None -> None."""
    results: list[dict[str, float] | None] = []
    for i, (a, r, s) in enumerate(zip(attributions, rationales, scores or [a.scores for a in attributions],
                                      strict=True)):
        if r is None:
            results.append(None)
            continue
        words, w = word_scores(a.text, a.tokens, s)
        if len(r) > len(words):
            raise ValueError(f"example {i}: the rationale has {len(r)} values but the text has {len(words)} words")
        results.append(plausibility_scores(w[: len(r)], r))
    return results


def random_baseline(rationales: list[np.ndarray | None], draws: int = 3, seed: int = 0
                    ) -> list[dict[str, float] | None]:
    """The same metrics for words ranked at random (mean over draws): what an uninformative explainer gets."""
    rng = np.random.default_rng(seed)
    results: list[dict[str, float] | None] = []
    for r in rationales:
        if r is None:
            results.append(None)
            continue
        rows = [plausibility_scores(rng.random(len(r)), r) for _ in range(draws)]
        results.append({key: float(np.mean([row[key] for row in rows])) for key in SPECS})
    return results


def summarize(rows: list[dict[str, float] | None]) -> dict[str, float]:
    """Mean of each metric over the examples that have one, and how many were scored."""
    scored = [r for r in rows if r is not None and not np.isnan(r["token_auprc"])]
    means = {key: float(np.mean([r[key] for r in scored])) if scored else float("nan") for key in SPECS}
    return {**means, "scored": len(scored)}
