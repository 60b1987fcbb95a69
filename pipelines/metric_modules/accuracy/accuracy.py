"""Accuracy: share of predictions equal to the reference.

A local evaluate metric module, loaded by path so it works offline."""

import evaluate
import numpy as np

from pipelines import classification_math


class Accuracy(evaluate.Metric):
    def _info(self):
        return classification_math.metric_info("Accuracy: share of predictions equal to the reference.")

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        return {"accuracy": float((predictions == references).mean()) if len(references) else 0.0}
