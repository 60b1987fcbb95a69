"""ONNX export of a classifier folder: the fp32 graph, and dynamic int8 quantization recipes.

The fp32 graph comes from `torch.onnx.export` (TorchScript exporter, dynamic batch and sequence axes). The int8
copy uses onnxruntime dynamic quantization; which layers stay in float is chosen by measurement in the export
stage: the candidates below run from most to least quantized and the first one within the accuracy budget wins.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from pipelines.inference import ONNX_FILES, forward_inputs
from pipelines.models import ModelSource, load_tokenizer


@dataclass
class Int8Candidate:
    """One dynamic-quantization recipe: per-channel or not, the operators quantized, node-name patterns kept float."""

    name: str
    per_channel: bool
    keep_float: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ("MatMul", "Gemm")


# From most to least quantized. Gather: the embedding tables, most of a small model's size.
# Head: the classifier/pooler (tiny, and every logit goes through it).
# FFN down-projections take GELU/SiLU outputs, whose outliers suffer most from per-tensor activation scales.
HEAD = r"(classifier|pooler|score)"
FFN_DOWN = r"(layer\.\d+/output/dense|mlp/down_proj|mlp/c_proj)"
INT8_CANDIDATES = (
    Int8Candidate("matmul-and-embeddings-per-channel", per_channel=True, op_types=("MatMul", "Gemm", "Gather")),
    Int8Candidate("all-matmul-per-tensor", per_channel=False),
    Int8Candidate("all-matmul-per-channel", per_channel=True),
    Int8Candidate("per-channel-float-head", per_channel=True, keep_float=(HEAD,)),
    Int8Candidate("per-channel-float-head-ffn-down", per_channel=True, keep_float=(HEAD, FFN_DOWN)),
)


def export_fp32(model_dir: Path, target: Path, opset: int = 17) -> None:
    """Write target/model.onnx (logits from input_ids, attention_mask[, token_type_ids]) with dynamic axes."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True,
                                                               attn_implementation="eager")
    model.config.use_cache = False
    model.eval()
    tokenizer = load_tokenizer(ModelSource(name=str(model_dir), location=str(model_dir), kind="local"))
    model.config.pad_token_id = tokenizer.pad_token_id
    names = forward_inputs(model, tokenizer)
    sample = tokenizer(["a short example text", "and a second, somewhat longer example text to pad"],
                       padding=True, return_tensors="pt")

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs, strict=True))).logits

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape-dependent Python branches: the parity check decides
        torch.onnx.export(LogitsOnly(model), tuple(sample[n] for n in names), str(target / ONNX_FILES["fp32"]),
                          input_names=names, output_names=["logits"], dynamic_axes=axes, opset_version=opset,
                          dynamo=False, do_constant_folding=True)


def quantize_int8(fp32_file: Path, int8_file: Path, candidate: Int8Candidate) -> list[str]:
    """Dynamic int8 quantization of the MatMul weights; returns the node names kept in float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32_file), load_external_data=False).graph
    pattern = re.compile("|".join(candidate.keep_float)) if candidate.keep_float else None
    kept = [n.name for n in graph.node if n.op_type in candidate.op_types and pattern and pattern.search(n.name)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs every tensor, and a pre-processing hint, on the root logger
    try:
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8,
                         per_channel=candidate.per_channel, op_types_to_quantize=list(candidate.op_types),
                         nodes_to_exclude=kept, extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return kept
