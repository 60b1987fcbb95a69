"""Confusion matrix and per-class precision, recall and F1 from label ids (numpy only)."""

from __future__ import annotations

import numpy as np


def confusion(references, predictions, num_labels: int | None = None) -> np.ndarray:
    """Counts matrix[true, predicted]."""
    references = np.asarray(references, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    n = num_labels or int(max(references.max(initial=0), predictions.max(initial=0)) + 1)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (references, predictions), 1)
    return matrix


def per_class(references, predictions, num_labels: int | None = None) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class; 0 where a class is never predicted or never present."""
    matrix = confusion(references, predictions, num_labels)
    true_pos = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def averaged(values: np.ndarray, average: str | None, support: np.ndarray):
    """Reduce a per-class array: None keeps it, 'macro' is the plain mean, 'weighted' weighs by support."""
    if average is None:
        return values.tolist()
    if average == "macro":
        return float(values.mean())
    if average == "weighted":
        return float((values * support).sum() / max(support.sum(), 1))
    raise ValueError(f"average must be None, 'macro' or 'weighted', got {average!r}")


def metric_info(description: str):
    """The evaluate.MetricInfo shared by the local metric modules: integer label ids in, one number out."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description="predictions and references: lists of integer label ids",
        features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
    )
