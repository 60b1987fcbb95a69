"""Classification metrics through evaluate, from local metric modules (no hub), with their declarations."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRIC_MODULES = Path(__file__).parent / "metric_modules"


@dataclass(frozen=True)
class MetricSpec:
    """What a metric means: its name, whether higher is better, its range, and one line on what it measures.

    Every metric of the project (classification, faithfulness, agreement) declares itself this way, so
    reports and benchmarks can be drawn from the declarations."""

    name: str
    higher_is_better: bool
    low: float
    high: float
    description: str = ""


SPECS = {
    "accuracy": MetricSpec("accuracy", True, 0.0, 1.0, "share of rows whose predicted label is the gold one"),
    "macro_f1": MetricSpec("macro_f1", True, 0.0, 1.0, "F1 of each class, averaged over the classes"),
    "precision": MetricSpec("precision", True, 0.0, 1.0, "share of a class's predictions that are right"),
    "recall": MetricSpec("recall", True, 0.0, 1.0, "share of a class's rows predicted as it"),
}


@functools.cache
def load_metric(name: str):
    """Load a metric module shipped in pipelines/metric_modules/<name>/ by path (works offline)."""
    import evaluate

    return evaluate.load(str(METRIC_MODULES / name))


def classification_metrics(predictions, references, label_names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix, keyed by label name."""
    predictions = np.asarray(predictions).tolist()
    references = np.asarray(references).tolist()
    n = len(label_names)
    per_class = {
        key: load_metric(key).compute(predictions=predictions, references=references, average=None, num_labels=n)[key]
        for key in ("precision", "recall", "f1")
    }
    return {
        "accuracy": load_metric("accuracy").compute(predictions=predictions, references=references)["accuracy"],
        "macro_f1": load_metric("f1").compute(
            predictions=predictions, references=references, average="macro", num_labels=n
        )["f1"],
        "per_class": {
            name: {key: round(float(per_class[key][i]), 6) for key in per_class} for i, name in enumerate(label_names)
        },
        "confusion_matrix": {
            "labels": list(label_names),
            "counts": load_metric("confusion_matrix").compute(
                predictions=predictions, references=references, num_labels=n
            )["confusion_matrix"],
        },
        "num_examples": len(references),
    }


def trainer_metrics(eval_prediction) -> dict:
    """compute_metrics for transformers.Trainer: accuracy and macro-F1 (order-safe: uses its own label_ids)."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    predictions = np.asarray(logits).argmax(-1).tolist()
    references = np.asarray(eval_prediction.label_ids).tolist()
    return {
        "accuracy": load_metric("accuracy").compute(predictions=predictions, references=references)["accuracy"],
        "macro_f1": load_metric("f1").compute(predictions=predictions, references=references, average="macro")["f1"],
    }
