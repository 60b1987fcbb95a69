"""ONNX export with an int8 copy, refused unless it passes a parity gate against the PyTorch model.

The fp32 graph comes from `torch.onnx.export` (TorchScript exporter, dynamic batch and sequence axes). The
int8 copy uses onnxruntime dynamic quantization; which layers stay in float is chosen by measurement: the
candidates run from most to least quantized and the first one within the accuracy budget is kept.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import artifacts
from pipelines.backends import (
    ONNX_FILES,
    Backend,
    OnnxBackend,
    TorchBackend,
    batched_logits,
    latency_ms,
    load_backend,
    onnx_session,
)
from pipelines.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class ParitySet:
    """Texts (and gold label ids, if known) the exported copies are checked on."""

    source: str
    texts: list[str]
    pairs: list[str] | None = None
    labels: np.ndarray | None = None


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


@dataclass
class ExportSettings:
    max_logit_diff: float = 1e-4  # fp32 ONNX vs PyTorch, largest absolute logit difference
    quantize: str = "int8"  # "int8" or "none"
    max_accuracy_drop: float = 0.005  # int8 vs PyTorch (points of accuracy / 100); agreement used without labels
    min_agreement: float = 0.97  # int8 labels equal to PyTorch's on this share of the parity set
    batch_size: int = 64
    measure_latency: bool = True
    try_all_int8: bool = False  # evaluate every int8 recipe (for the record), still keeping the first that passes
    num_threads: int | None = None
    max_length: int = 128
    opset: int = 17

    def __post_init__(self) -> None:
        if self.quantize not in ("int8", "none"):
            raise UserError(f"export.quantize must be int8 or none, got '{self.quantize}'")
        if not self.max_logit_diff > 0:
            raise UserError(f"export.max_logit_diff must be positive, got {self.max_logit_diff}")
        for key in ("max_accuracy_drop", "min_agreement"):
            if not 0 <= getattr(self, key) <= 1:
                raise UserError(f"export.{key} must be between 0 and 1, got {getattr(self, key)}")
        if self.batch_size < 1 or (self.num_threads is not None and self.num_threads < 1):
            raise UserError("export.batch_size and export.num_threads must be at least 1")


@dataclass
class ExportResult:
    output_dir: Path
    metrics: dict
    predictions: dict[str, np.ndarray]  # format -> predicted label ids on the parity set


def size_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        total += sum(p.stat().st_size for p in files)
    return total / 1e6


def export_fp32(model_dir: Path, target: Path, opset: int = 17) -> None:
    """Write target/model.onnx (logits from input_ids, attention_mask[, token_type_ids]) with dynamic axes."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from pipelines.backends import forward_inputs

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True,
                                                               attn_implementation="eager")
    model.config.use_cache = False
    model.eval()
    tokenizer = load_backend_tokenizer(model_dir)
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


def load_backend_tokenizer(model_dir: Path):
    from pipelines.models import ModelSource, load_tokenizer

    return load_tokenizer(ModelSource(name=str(model_dir), location=str(model_dir), kind="local"))


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


def _onnx_backend(reference: Backend, file: Path, num_threads: int) -> OnnxBackend:
    session = onnx_session(file, num_threads)
    return OnnxBackend(file.parent, reference.tokenizer, reference.label_names,
                       [i.name for i in session.get_inputs()], reference.max_length, f"onnx-{file.stem}",
                       session=session)


def _scores(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> dict:
    predicted = logits.argmax(axis=1)
    return {
        "max_abs_logit_diff": float(np.abs(logits - reference).max()) if len(logits) else 0.0,
        "label_agreement": float((predicted == reference.argmax(axis=1)).mean()),
        "dev_accuracy": float((predicted == labels).mean()) if labels is not None else None,
    }


def measure_latencies(backend: Backend, texts: list[str]) -> dict:
    """Median milliseconds per batch of 1 (50 batches) and of 32 (10 batches), tokenization included."""
    return {"latency_b1_ms": latency_ms(backend, texts, 1, batches=50, warmup=5),
            "latency_b32_ms": latency_ms(backend, texts, 32, batches=10, warmup=2)}


def int8_passes(row: dict, settings: ExportSettings, has_labels: bool, reference_accuracy: float | None) -> bool:
    if has_labels and reference_accuracy is not None:
        return reference_accuracy - row["dev_accuracy"] <= settings.max_accuracy_drop + 1e-12
    return row["label_agreement"] >= settings.min_agreement


def gate_failures(metrics: dict, settings: ExportSettings) -> list[str]:
    """What failed the parity gate, as sentences with the figures (empty when it passed)."""
    failures = []
    fp32 = metrics["onnx_fp32"]
    if not fp32["max_abs_logit_diff"] <= settings.max_logit_diff:
        failures.append(f"fp32 ONNX logits differ from PyTorch by up to {fp32['max_abs_logit_diff']:.3g} "
                        f"(allowed {settings.max_logit_diff:g})")
    int8 = metrics.get("onnx_int8")
    if int8 is not None and not int8["passed"]:
        reference = metrics["pytorch"]["dev_accuracy"]
        if reference is not None:
            failures.append(f"int8 ONNX accuracy {int8['dev_accuracy']:.4f} vs PyTorch {reference:.4f} "
                            f"(allowed drop {settings.max_accuracy_drop:g})")
        else:
            failures.append(f"int8 ONNX agrees with PyTorch on {int8['label_agreement']:.4f} of the rows "
                            f"(required {settings.min_agreement:g})")
    return failures


def run_export(model_dir: str | Path, output_dir: str | Path, parity: ParitySet, settings: ExportSettings,
               overwrite: bool = False, force: bool = False) -> ExportResult:
    """Export model_dir to output_dir (fp32 ONNX, int8 copy, tokenizer, config, metrics, card) behind the gate."""
    import onnxruntime

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not parity.texts:
        raise UserError(f"the parity set {parity.source} has no texts")
    began = time.perf_counter()
    reference = load_backend(model_dir, num_threads=settings.num_threads, max_length=settings.max_length)
    if not isinstance(reference, TorchBackend):
        raise UserError(f"{model_dir} is already an ONNX export; pass the PyTorch model folder")
    if not any(model_dir.glob("*.safetensors")):
        raise UserError(f"{model_dir} is a LoRA adapter; export the merged model folder beside it")
    settings_dict = {"model": str(model_dir), **dataclasses.asdict(settings)}
    artifacts.prepare_output_dir(output_dir, resume=False, overwrite=overwrite, stage="export",
                                 settings=settings_dict)
    staging = artifacts.staging_dir(output_dir)
    try:
        threads = settings.num_threads or os.cpu_count() or 1
        encoded = reference.encode(parity.texts, parity.pairs)
        reference_logits = batched_logits(reference, encoded, settings.batch_size)
        texts = parity.texts
        metrics: dict = {"source_model": str(model_dir), "parity_set": {"source": parity.source, "rows": len(texts)},
                         "inputs": reference.input_names,
                         "onnxruntime": onnxruntime.__version__, "gate": dataclasses.asdict(settings)}
        predictions = {"pytorch": reference_logits.argmax(axis=1)}
        metrics["pytorch"] = {**_scores(reference_logits, reference_logits, parity.labels),
                              "size_mb": size_mb(*model_dir.glob("*.safetensors"))}
        if settings.measure_latency:
            metrics["pytorch"].update(measure_latencies(reference, texts))

        log.info("exporting %s to ONNX", model_dir)
        export_fp32(model_dir, staging, settings.opset)
        fp32 = _onnx_backend(reference, staging / ONNX_FILES["fp32"], threads)
        logits = batched_logits(fp32, encoded, settings.batch_size)
        predictions["onnx_fp32"] = logits.argmax(axis=1)
        metrics["onnx_fp32"] = {**_scores(logits, reference_logits, parity.labels),
                                "size_mb": size_mb(staging / ONNX_FILES["fp32"])}
        metrics["onnx_fp32"]["passed"] = metrics["onnx_fp32"]["max_abs_logit_diff"] <= settings.max_logit_diff
        if settings.measure_latency:
            metrics["onnx_fp32"].update(measure_latencies(fp32, texts))

        if settings.quantize == "int8":
            metrics["onnx_int8"], predictions["onnx_int8"] = _choose_int8(
                staging, reference, encoded, reference_logits, parity, settings, threads)
            if settings.measure_latency:
                int8 = _onnx_backend(reference, staging / ONNX_FILES["int8"], threads)
                metrics["onnx_int8"].update(measure_latencies(int8, texts))

        failures = gate_failures(metrics, settings)
        metrics["gate"]["passed"] = not failures
        metrics["gate"]["failures"] = failures
        if failures and not force:
            raise UserError(f"export of {model_dir} refused by the parity gate: {'; '.join(failures)} "
                            "(pass --force to keep it anyway)")
        reference.tokenizer.save_pretrained(staging)
        reference.model.config.save_pretrained(staging)
        metrics["seconds"] = round(time.perf_counter() - began, 3)
        artifacts.write_json(staging / "export_metrics.json", metrics)
        from pipelines.model_card import export_card

        artifacts.write_text(staging / "README.md", export_card(model_dir, metrics))
        artifacts.write_json(staging / artifacts.MANIFEST, artifacts.manifest(
            "export", settings_dict, parity.source, {"total": time.perf_counter() - began}))
        artifacts.publish(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(output_dir, metrics, predictions)


def _choose_int8(staging: Path, reference: Backend, encoded, reference_logits: np.ndarray, parity: ParitySet,
                 settings: ExportSettings, threads: int) -> tuple[dict, np.ndarray]:
    """Try the int8 recipes from most to least quantized; keep the first that passes, else the most accurate."""
    tried, best = [], None
    target = staging / ONNX_FILES["int8"]
    reference_accuracy = _scores(reference_logits, reference_logits, parity.labels)["dev_accuracy"]
    for candidate in INT8_CANDIDATES:
        file = staging / f".candidate-{candidate.name}.onnx"
        kept = quantize_int8(staging / ONNX_FILES["fp32"], file, candidate)
        backend = _onnx_backend(reference, file, threads)
        logits = batched_logits(backend, encoded, settings.batch_size)
        row = {"recipe": candidate.name, "per_channel": candidate.per_channel, "kept_float": kept,
               **_scores(logits, reference_logits, parity.labels), "size_mb": size_mb(file)}
        row["passed"] = int8_passes(row, settings, parity.labels is not None, reference_accuracy)
        log.info("int8 recipe %s: agreement %.4f accuracy %s", candidate.name, row["label_agreement"],
                 row["dev_accuracy"])
        tried.append(row)
        key = (row["dev_accuracy"] if row["dev_accuracy"] is not None else 0.0, row["label_agreement"])
        if best is None or (row["passed"] and not best[1]["passed"]) or (not best[1]["passed"] and key > best[0]):
            best = (key, row, file, logits)
        if row["passed"] and not settings.try_all_int8:
            break
    _, row, file, logits = best
    file.replace(target)
    for leftover in staging.glob(".candidate-*.onnx"):
        leftover.unlink()
    chosen = {k: v for k, v in row.items() if k != "kept_float"}
    chosen["op_types"] = list(next(c for c in INT8_CANDIDATES if c.name == row["recipe"]).op_types)
    chosen["kept_float_nodes"] = len(row["kept_float"])
    chosen["candidates"] = [{k: v for k, v in r.items() if k != "kept_float"} for r in tried]
    return chosen, logits.argmax(axis=1)


def parity_set_from_file(path: str | Path, text_column: str, text_pair_column: str | None,
                         label_column: str | None, label_names: list[str], limit: int | None = None) -> ParitySet:
    """Read the parity texts (and gold labels, when the column exists) from a data file."""
    from pipelines.data import _require_column, read_frame
    from pipelines.predict import label_ids, texts_of

    frame = read_frame(path)
    columns = [str(c) for c in frame.columns]
    _require_column(str(path), columns, text_column, "text")
    if text_pair_column:
        _require_column(str(path), columns, text_pair_column, "text pair")
    if limit:
        frame = frame.iloc[:limit]
    labels = None
    if label_column and label_column in columns:
        labels = label_ids(frame[label_column].tolist(), label_names, str(path))
    return ParitySet(str(path), texts_of(frame, text_column, str(path)),
                     texts_of(frame, text_pair_column, str(path)) if text_pair_column else None, labels)


def default_parity_file(model_dir: Path) -> dict | None:
    """The eval file and columns a fine-tuning or distillation run recorded in its config.yaml, if any."""
    import yaml

    recorded = model_dir / "config.yaml"
    if not recorded.is_file():
        return None
    data = (yaml.safe_load(recorded.read_text()) or {}).get("data") or {}
    if not data.get("eval_file") or not Path(data["eval_file"]).is_file():
        return None
    return {"path": data["eval_file"], "text_column": data.get("text_column", "text"),
            "text_pair_column": data.get("text_pair_column"), "label_column": data.get("label_column", "label")}
