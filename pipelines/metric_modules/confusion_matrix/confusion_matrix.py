"""Confusion matrix: counts[true label][predicted label].

A local evaluate metric module, loaded by path so it works offline."""

import evaluate

from pipelines import classification_math


class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return classification_math.metric_info("Confusion matrix: counts[true label][predicted label].")

    def _compute(self, predictions, references, num_labels=None):
        return {"confusion_matrix": classification_math.confusion(references, predictions, num_labels).tolist()}
