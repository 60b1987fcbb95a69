"""The model card (README.md) written beside an ONNX export: parity figures of each copy."""

from __future__ import annotations


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
