"""Pieces shared by the model cards (the README.md written beside each model): metric and confusion tables."""

from __future__ import annotations


def metrics_table(evaluated: dict) -> str:
    """Per-class precision, recall and F1 as a markdown table (from `classification_metrics`)."""
    lines = ["| class | precision | recall | F1 |", "|---|---|---|---|"]
    for name, row in evaluated["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} |")
    return "\n".join(lines)


def confusion_table(confusion: dict) -> str:
    """The confusion matrix (true rows, predicted columns) as a markdown table."""
    labels = confusion["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, row in zip(labels, confusion["counts"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def labels_line(label_names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in label_names)
