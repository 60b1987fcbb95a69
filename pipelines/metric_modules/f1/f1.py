"""F1: per class, or averaged (macro or weighted).

A local evaluate metric module, loaded by path so it works offline."""

import evaluate

from pipelines import classification_math


class F1(evaluate.Metric):
    def _info(self):
        return classification_math.metric_info("F1: per class, or averaged (macro or weighted).")

    def _compute(self, predictions, references, average="macro", num_labels=None):
        stats = classification_math.per_class(references, predictions, num_labels)
        return {"f1": classification_math.averaged(stats["f1"], average, stats["support"])}
