"""Confusion matrix: counts[true label][predicted label].

A local evaluate metric module, loaded by path so it works offline."""

import datasets
import evaluate

from pipelines import classification_math


class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Confusion matrix: counts[true label][predicted label].",
            citation="",
            inputs_description="predictions and references: lists of integer label ids",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None):
        return {"confusion_matrix": classification_math.confusion(references, predictions, num_labels).tolist()}
