"""The model card (README.md) written beside a fine-tuned classifier."""

from __future__ import annotations

from finetune.config import FinetuneConfig
from pipelines.cards import confusion_table, labels_line, metrics_table
from pipelines.config import dump_yaml


def finetune_card(config: FinetuneConfig, metrics: dict) -> str:
    evaluated, data, train = metrics["eval"], metrics["data"], metrics["train"]
    lora = config.lora
    method = (f"LoRA (r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}), merged into the weights"
              if lora.method == "lora" else "full fine-tuning")
    adapter = ("The LoRA adapter is kept in `adapter/` (peft)." if lora.method == "lora"
               else "All weights were trained (full fine-tuning).")
    eval_source = config.data.eval_file or f"a stratified {config.data.validation_split:.0%} split of the training file"
    return f"""---
library_name: transformers
pipeline_tag: text-classification
base_model: {config.model.name}
---

# Text classifier fine-tuned from `{config.model.name}`

Labels: {labels_line(data["label_names"])}. Method: {method}.

Load it with plain transformers, no project code needed:

```python
from transformers import pipeline
classify = pipeline("text-classification", model="PATH/TO/THIS/FOLDER")
```

{adapter}

## Data

- Training: `{config.data.train_file}`, {data["train_examples"]} examples.
- Evaluation: {eval_source}, {data["eval_examples"]} examples.
{"".join(f"- {note}" + chr(10) for note in data["notes"])}
## Evaluation

- Accuracy: **{evaluated["accuracy"]:.4f}**
- Macro-F1: **{evaluated["macro_f1"]:.4f}**

{metrics_table(evaluated)}

Confusion matrix:

{confusion_table(evaluated["confusion_matrix"])}

## Training

{train["global_step"]} steps ({train["epochs"]:.2f} epochs) in {train["train_runtime"]:.0f} s, \
final training loss {train["train_loss"]:.4f}. Trained parameters: {metrics["parameters"]["trained"]:,} \
of {metrics["parameters"]["total"]:,}.

```yaml
{dump_yaml(config).strip()}
```

## Limitations

- Accuracy is measured on the evaluation data above only; texts unlike it (other domains, languages,
  lengths beyond {config.model.max_length} tokens, which are truncated) may be classified worse.
- The model inherits the biases of its pretrained base model and of the training data.
- Scores are softmax probabilities, not calibrated confidences.
"""
