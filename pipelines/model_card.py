"""Model cards: the README.md written beside each model (data, metrics, settings, limitations)."""

from __future__ import annotations

from pipelines.config import FinetuneConfig, dump_yaml


def _metrics_table(evaluated: dict) -> str:
    lines = ["| class | precision | recall | F1 |", "|---|---|---|---|"]
    for name, row in evaluated["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} |")
    return "\n".join(lines)


def _confusion_table(confusion: dict) -> str:
    labels = confusion["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, row in zip(labels, confusion["counts"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def adapter_note(config: FinetuneConfig) -> str:
    if config.lora.method != "lora":
        return "All weights were trained (full fine-tuning)."
    if config.adapt.epochs:
        return ("No LoRA adapter is kept: it applies to the base model adapted to the training texts, which lives "
                "on only merged into this folder.")
    return "The LoRA adapter is kept in `adapter/` (peft)."


def adapted(config: FinetuneConfig) -> str:
    if not config.adapt.epochs:
        return ""
    return (f" Before fine-tuning, the base model went on with its pretraining objective (masked words or the next "
            f"token) on the training texts for {config.adapt.epochs:g} epochs (task-adaptive pretraining).")


def finetune_card(config: FinetuneConfig, metrics: dict) -> str:
    evaluated, data, train = metrics["eval"], metrics["data"], metrics["train"]
    method = (
        f"LoRA (r={config.lora.r}, alpha={config.lora.alpha}, dropout={config.lora.dropout}), merged into the weights"
        if config.lora.method == "lora"
        else "full fine-tuning"
    )
    eval_source = config.data.eval_file or f"a stratified {config.data.validation_split:.0%} split of the training file"
    return f"""---
library_name: transformers
pipeline_tag: text-classification
base_model: {config.model.name}
---

# Text classifier fine-tuned from `{config.model.name}`

Labels: {", ".join(f"`{n}`" for n in data["label_names"])}. Method: {method}.

Load it with plain transformers, no project code needed:

```python
from transformers import pipeline
classify = pipeline("text-classification", model="PATH/TO/THIS/FOLDER")
```

{adapter_note(config)}

## Data

- Training: `{config.data.train_file}`, {data["train_examples"]} examples.
- Evaluation: {eval_source}, {data["eval_examples"]} examples.
{"".join(f"- {note}" + chr(10) for note in data["notes"])}
## Evaluation

- Accuracy: **{evaluated["accuracy"]:.4f}**
- Macro-F1: **{evaluated["macro_f1"]:.4f}**

{_metrics_table(evaluated)}

Confusion matrix:

{_confusion_table(evaluated["confusion_matrix"])}

## Training

{train["global_step"]} steps ({train["epochs"]:.2f} epochs) in {train["train_runtime"]:.0f} s, \
final training loss {train["train_loss"]:.4f}. Trained parameters: {metrics["parameters"]["trained"]:,} \
of {metrics["parameters"]["total"]:,}.{averaged_weights(config.train)}{adapted(config)}

```yaml
{dump_yaml(config).strip()}
```

## Limitations

- Accuracy is measured on the evaluation data above only; texts unlike it (other domains, languages,
  lengths beyond {config.model.max_length} tokens, which are truncated) may be classified worse.
- The model inherits the biases of its pretrained base model and of the training data.
- Scores are softmax probabilities, not calibrated confidences.
"""


def averaged_weights(train) -> str:
    """A sentence for cards of models published as a moving average of their weights (else nothing)."""
    if not train.weight_average_decay:
        return ""
    return (f" The weights are an exponential moving average of the trained ones (decay "
            f"{train.weight_average_decay}), taken at the best evaluation, which also ran on the average.")


def _student_origin(student: dict) -> str:
    if student["kind"] == "layers":
        return f"teacher layers {student['layer_map']} kept"
    if student["kind"] == "fresh" and student["layer_map"]:
        return f"{student['hidden_size']} wide, pruned from teacher layers {student['layer_map']}"
    if student["kind"] == "fresh":
        return f"{student['hidden_size']} wide, PCA-reduced teacher embeddings, random blocks"
    return "a smaller pretrained model with its own tokenizer"


def distill_card(config, metrics: dict, distill_metrics: dict) -> str:
    """Model card of a distilled student: teacher vs student table, then the student's own metrics."""
    teacher, student = distill_metrics["teacher"], distill_metrics["student"]
    rows = [("parameters", "{:,}"), ("size_mb", "{:.1f}"), ("layers", "{}"), ("hidden_size", "{}"),
            ("dev_accuracy", "{:.4f}"), ("dev_macro_f1", "{:.4f}"), ("latency_b1_ms", "{:.2f}"),
            ("latency_b32_ms", "{:.1f}")]
    table = ["| | teacher | student |", "|---|---|---|"]
    table += [f"| {key} | {fmt.format(teacher[key])} | {fmt.format(student[key])} |" for key, fmt in rows]
    evaluated = metrics["eval"]
    source = f"`{teacher['path']}`"
    if teacher.get("members"):  # an ensemble: its figures are the sum (size, latency) or mean-probability vote
        source = f"an ensemble of {len(teacher['members'])} teachers\n\n" + "\n".join(
            f"- `{m['path']}`: dev accuracy {m['dev_accuracy']:.4f}" for m in teacher["members"])
    return f"""---
library_name: transformers
pipeline_tag: text-classification
---

# Student distilled from {source}

Labels: {", ".join(f"`{n}`" for n in metrics["data"]["label_names"])}. Student: {_student_origin(student)}. \
Loads with plain transformers:
`pipeline("text-classification", model="PATH/TO/THIS/FOLDER")`.

{chr(10).join(table)}

Retention (student / teacher accuracy): **{distill_metrics["retention"]:.4f}**; agreement with the teacher:
**{distill_metrics["agreement"]:.4f}**; speed-up at batch 32: **{distill_metrics["speedup_b32"]:.2f}x**
(CPU, tokenization included).

## Evaluation of the student

{_metrics_table(evaluated)}

{_confusion_table(evaluated["confusion_matrix"])}

## Settings

Soft KL at T={config.loss.temperature} (x T²) weighted {config.loss.soft_weight}, gold-label cross-entropy
weighted {1 - config.loss.soft_weight:.2f}; hidden-state MSE weight {config.loss.hidden_weight}, attention-map MSE
weight {config.loss.attention_weight}; teacher {distill_metrics["teacher_logits"]["mode"]}; \
{config.distill.augment_copies} augmented copies per training text.{averaged_weights(config.train)}

```yaml
{dump_yaml(config).strip()}
```

## Limitations

- A student copies its teacher's mistakes and biases; agreement above says how closely it follows it.
- Measured on the evaluation data above only; latency depends on the machine and thread count.
"""


def _cell(value, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def export_card(model_dir, metrics: dict) -> str:
    """Model card of an ONNX export: parity figures of each copy against the PyTorch model it came from."""
    rows = [("pytorch", "PyTorch (safetensors)"), ("onnx_fp32", "ONNX fp32 (`model.onnx`)"),
            ("onnx_int8", "ONNX int8 (`model.int8.onnx`)")]
    table = ["| copy | size MB | latency b1 ms | latency b32 ms | accuracy | agreement | max logit diff |",
             "|---|---|---|---|---|---|---|"]
    for key, title in rows:
        if key in metrics:
            m = metrics[key]
            table.append(f"| {title} | {m['size_mb']:.1f} | {_cell(m.get('latency_b1_ms'), '{:.2f}')} | "
                         f"{_cell(m.get('latency_b32_ms'), '{:.1f}')} | {_cell(m['dev_accuracy'], '{:.4f}')} | "
                         f"{m['label_agreement']:.4f} | {m['max_abs_logit_diff']:.2e} |")
    int8 = metrics.get("onnx_int8")
    recipe = (f"Int8 recipe: `{int8['recipe']}` (dynamic quantization of {', '.join(int8['op_types'])} weights, "
              f"{'per-channel' if int8['per_channel'] else 'per-tensor'}, {int8['kept_float_nodes']} nodes "
              f"kept in float), chosen as the most quantized of {len(int8['candidates'])} recipes tried within the "
              f"accuracy budget." if int8 else "No int8 copy was made.")
    gate = metrics["gate"]
    return f"""---
library_name: onnx
pipeline_tag: text-classification
---

# ONNX export of `{model_dir}`

Inputs `{"`, `".join(metrics.get("inputs", ["input_ids", "attention_mask"]))}` with dynamic batch and sequence
axes, output `logits`. The tokenizer and `config.json` (label names) sit beside the models. Label a file with
`python scripts/predict.py --model THIS_FOLDER --input-file F --output-file G`.

Parity on {metrics["parity_set"]["source"]} ({metrics["parity_set"]["rows"]} rows); gate
{"passed" if gate["passed"] else "FAILED: " + "; ".join(gate["failures"])}.

{chr(10).join(table)}

{recipe}

## Limitations

- Latencies are CPU figures of the exporting machine, tokenization included.
- The int8 copy quantizes activations at run time per tensor; texts unlike the parity set may lose more.
"""
