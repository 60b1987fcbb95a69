"""The model card (README.md) written beside a distilled student."""

from __future__ import annotations

from distill.config import DistillConfig
from pipelines.cards import confusion_table, labels_line, metrics_table
from pipelines.config import dump_yaml


def _student_origin(student: dict) -> str:
    if student["kind"] == "layers":
        return f"teacher layers {student['layer_map']} kept"
    if student["kind"] == "fresh" and student["layer_map"]:
        return f"{student['hidden_size']} wide, pruned from teacher layers {student['layer_map']}"
    if student["kind"] == "fresh":
        return f"{student['hidden_size']} wide, PCA-reduced teacher embeddings, random blocks"
    return "a smaller pretrained model with its own tokenizer"


def distill_card(config: DistillConfig, metrics: dict, distill_metrics: dict) -> str:
    """Model card of a distilled student: teacher vs student table, then the student's own metrics."""
    teacher, student = distill_metrics["teacher"], distill_metrics["student"]
    rows = [("parameters", "{:,}"), ("size_mb", "{:.1f}"), ("layers", "{}"), ("hidden_size", "{}"),
            ("dev_accuracy", "{:.4f}"), ("dev_macro_f1", "{:.4f}"), ("latency_b1_ms", "{:.2f}"),
            ("latency_b32_ms", "{:.1f}")]
    table = ["| | teacher | student |", "|---|---|---|"]
    table += [f"| {key} | {fmt.format(teacher[key])} | {fmt.format(student[key])} |" for key, fmt in rows]
    evaluated = metrics["eval"]
    loss = config.loss
    return f"""---
library_name: transformers
pipeline_tag: text-classification
---

# Student distilled from `{teacher["path"]}`

Labels: {labels_line(metrics["data"]["label_names"])}. Student: {_student_origin(student)}. \
Loads with plain transformers:
`pipeline("text-classification", model="PATH/TO/THIS/FOLDER")`.

{chr(10).join(table)}

Retention (student / teacher accuracy): **{distill_metrics["retention"]:.4f}**; agreement with the teacher:
**{distill_metrics["agreement"]:.4f}**; speed-up at batch 32: **{distill_metrics["speedup_b32"]:.2f}x**
(CPU, tokenization included).

## Evaluation of the student

{metrics_table(evaluated)}

{confusion_table(evaluated["confusion_matrix"])}

## Settings

Soft KL at T={loss.temperature} (x T²) weighted {loss.soft_weight}, gold-label cross-entropy
weighted {1 - loss.soft_weight:.2f}; hidden-state MSE weight {loss.hidden_weight}, attention-map MSE
weight {loss.attention_weight}; teacher {distill_metrics["teacher_logits"]["mode"]}; \
{config.augment.copies} augmented copies per training text.

```yaml
{dump_yaml(config).strip()}
```

## Limitations

- A student copies its teacher's mistakes and biases; agreement above says how closely it follows it.
- Measured on the evaluation data above only; latency depends on the machine and thread count.
"""
