"""Recall: per class, or averaged (macro or weighted).

A local evaluate metric module, loaded by path so it works offline."""

import datasets
import evaluate

from pipelines import classification_math


class Recall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Recall: per class, or averaged (macro or weighted).",
            citation="",
            inputs_description="predictions and references: lists of integer label ids",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="macro", num_labels=None):
        stats = classification_math.per_class(references, predictions, num_labels)
        return {"recall": classification_math.averaged(stats["recall"], average, stats["support"])}
