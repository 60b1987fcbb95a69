"""run_export: a classifier folder (or two) to ONNX fp32 + int8, refused unless the copies pass a parity gate.

With `compare` (the pipeline's teacher and student), each model goes into its own subfolder of the output
folder and `deployment.json` compares every copy of both: size, latency at batch 1 and 32, accuracy and
agreement with the first model's PyTorch predictions, all on one parity set.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from export.card import export_card
from export.config import ExportConfig, ExportSettings
from export.onnx import INT8_CANDIDATES, export_fp32, quantize_int8
from export.parity import ParitySet, gate_failures, int8_passes, parity_set, scores
from pipelines import artifacts
from pipelines.config import to_dict
from pipelines.data import read_record
from pipelines.errors import UserError
from pipelines.inference import (
    ONNX_FILES,
    Backend,
    Encoded,
    TorchBackend,
    batched_logits,
    latency_ms,
    load_backend,
    onnx_backend,
)
from pipelines.models import is_causal_lm_folder
from pipelines.stage import StageResult

log = logging.getLogger(__name__)
STAGE = "export"
DEPLOYMENT = "deployment.json"
FORMATS = (("pytorch", "PyTorch"), ("onnx_fp32", "ONNX fp32"), ("onnx_int8", "ONNX int8"))


def size_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        total += sum(p.stat().st_size for p in files)
    return total / 1e6


def measure_latencies(backend: Backend, texts: list[str]) -> dict:
    """Median milliseconds per batch of 1 (50 batches) and of 32 (10 batches), tokenization included."""
    return {"latency_b1_ms": latency_ms(backend, texts, 1, batches=50, warmup=5),
            "latency_b32_ms": latency_ms(backend, texts, 32, batches=10, warmup=2)}


def reference_backend(model_dir: Path, settings: ExportSettings) -> TorchBackend:
    """The PyTorch model the copies are checked against; ONNX folders and bare adapters are refused."""
    record = read_record(model_dir)
    max_length = settings.max_length or (record.max_length if record else 128)
    reference = load_backend(model_dir, num_threads=settings.num_threads, max_length=max_length)
    if not isinstance(reference, TorchBackend):
        raise UserError(f"{model_dir} is already an ONNX export; pass the PyTorch model folder")
    if not any(model_dir.glob("*.safetensors")):
        raise UserError(f"{model_dir} is a LoRA adapter; export the merged model folder beside it")
    return reference


def choose_int8(staging: Path, reference: Backend, encoded: Encoded, reference_logits: np.ndarray,
                parity: ParitySet, settings: ExportSettings) -> tuple[dict, np.ndarray]:
    """Try the int8 recipes from most to least quantized; keep the first that passes, else the most accurate."""
    tried, best = [], None
    reference_accuracy = scores(reference_logits, reference_logits, parity.labels)["dev_accuracy"]
    for candidate in INT8_CANDIDATES:
        file = staging / f".candidate-{candidate.name}.onnx"
        kept = quantize_int8(staging / ONNX_FILES["fp32"], file, candidate)
        backend = onnx_backend(file, reference.tokenizer, reference.label_names, reference.max_length,
                               settings.num_threads)
        logits = batched_logits(backend, encoded, settings.batch_size)
        row = {"recipe": candidate.name, "per_channel": candidate.per_channel, "kept_float": kept,
               **scores(logits, reference_logits, parity.labels), "size_mb": size_mb(file)}
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
    file.replace(staging / ONNX_FILES["int8"])
    for leftover in staging.glob(".candidate-*.onnx"):
        leftover.unlink()
    chosen = {k: v for k, v in row.items() if k != "kept_float"}
    chosen["op_types"] = list(next(c for c in INT8_CANDIDATES if c.name == row["recipe"]).op_types)
    chosen["kept_float_nodes"] = len(row["kept_float"])
    chosen["candidates"] = [{k: v for k, v in r.items() if k != "kept_float"} for r in tried]
    return chosen, logits.argmax(axis=1)


def export_model(reference: TorchBackend, model_dir: Path, output_dir: Path, parity: ParitySet,
                 settings: ExportSettings, overwrite: bool, force: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """Export one model folder into output_dir (fp32 ONNX, int8 copy, tokenizer, config, metrics, card) behind the
    gate; returns its metrics and each format's predicted label ids on the parity set."""
    import onnxruntime

    began = time.perf_counter()
    settings_dict = {"model": str(model_dir), **dataclasses.asdict(settings)}
    artifacts.prepare_output_dir(output_dir, resume=False, overwrite=overwrite, stage=STAGE, settings=settings_dict)
    with artifacts.publishing(output_dir, STAGE, settings_dict, parity.fingerprint, began) as staging:
        encoded = reference.encode(parity.texts, parity.pairs)
        reference_logits = batched_logits(reference, encoded, settings.batch_size)
        texts = parity.texts
        metrics: dict = {"source_model": str(model_dir), "parity_set": {"source": parity.source, "rows": len(texts)},
                         "inputs": reference.input_names,
                         "onnxruntime": onnxruntime.__version__, "gate": dataclasses.asdict(settings)}
        predictions = {"pytorch": reference_logits.argmax(axis=1)}
        metrics["pytorch"] = {**scores(reference_logits, reference_logits, parity.labels),
                              "size_mb": size_mb(*model_dir.glob("*.safetensors"))}
        if settings.measure_latency:
            metrics["pytorch"].update(measure_latencies(reference, texts))

        log.info("exporting %s to ONNX", model_dir)
        export_fp32(model_dir, staging, settings.opset)
        fp32 = onnx_backend(staging / ONNX_FILES["fp32"], reference.tokenizer, reference.label_names,
                            reference.max_length, settings.num_threads)
        logits = batched_logits(fp32, encoded, settings.batch_size)
        predictions["onnx_fp32"] = logits.argmax(axis=1)
        metrics["onnx_fp32"] = {**scores(logits, reference_logits, parity.labels),
                                "size_mb": size_mb(staging / ONNX_FILES["fp32"])}
        metrics["onnx_fp32"]["passed"] = metrics["onnx_fp32"]["max_abs_logit_diff"] <= settings.max_logit_diff
        if settings.measure_latency:
            metrics["onnx_fp32"].update(measure_latencies(fp32, texts))

        if settings.quantize == "int8":
            metrics["onnx_int8"], predictions["onnx_int8"] = choose_int8(
                staging, reference, encoded, reference_logits, parity, settings)
            if settings.measure_latency:
                int8 = onnx_backend(staging / ONNX_FILES["int8"], reference.tokenizer, reference.label_names,
                                    reference.max_length, settings.num_threads)
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
        artifacts.write_text(staging / "README.md", export_card(model_dir, metrics))
    return metrics, predictions


def deployment_rows(results: dict[str, tuple[dict, dict]]) -> list[dict]:
    """One row per model and format, agreement measured against the first model's PyTorch predictions."""
    first_predictions = next(iter(results.values()))[1]["pytorch"]
    rows = []
    for model, (metrics, predictions) in results.items():
        for key, title in FORMATS:
            if key not in metrics:
                continue
            m = metrics[key]
            rows.append({
                "model": model, "format": key, "format_name": title, "size_mb": m["size_mb"],
                "latency_b1_ms": m.get("latency_b1_ms"), "latency_b32_ms": m.get("latency_b32_ms"),
                "dev_accuracy": m["dev_accuracy"],
                "agreement_with_teacher": float((predictions[key] == first_predictions).mean()),
                "int8_recipe": m.get("recipe"),
            })
    return rows


def run_export(config: ExportConfig, *, resume: bool = False, overwrite: bool = False) -> StageResult:
    """Export config.model (and config.compare) and publish the copies; see the module docstring.

    `resume` is accepted for the stage contract; there is nothing to resume (an unfinished run starts over)."""
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    models = {config.model_name: Path(config.model)}
    if config.compare:
        models[config.compare_name] = Path(config.compare)
    for folder in models.values():
        if is_causal_lm_folder(folder):
            raise UserError(f"{folder} is a causal language model: this export writes classifiers (one forward pass, "
                            "logits per label) with a parity gate; generation needs a decoder export with a key/value "
                            "cache (optimum's), which is not bundled. The folder itself loads in transformers.pipeline"
                            "('text-generation')")
    references = {name: reference_backend(folder, config) for name, folder in models.items()}
    first = next(iter(references.values()))
    parity = parity_set(config, first.label_names)
    for name, reference in references.items():
        if reference.label_names != first.label_names:
            raise UserError(f"{models[name]} has labels {', '.join(reference.label_names)}; {config.model} has "
                            f"{', '.join(first.label_names)}")
    if not config.compare:
        metrics, _ = export_model(first, models[config.model_name], output_dir, parity, config, overwrite,
                                  config.force)
        return StageResult(STAGE, output_dir, metrics, time.perf_counter() - started)

    artifacts.prepare_output_dir(output_dir, resume=False, overwrite=overwrite, stage=STAGE, settings=to_dict(config))
    with artifacts.publishing(output_dir, STAGE, to_dict(config), parity.fingerprint, started) as staging:
        results = {name: export_model(references[name], folder, staging / name, parity, config, False, config.force)
                   for name, folder in models.items()}
        table = {"parity_set": parity.source, "parity_rows": len(parity.texts), "rows": deployment_rows(results)}
        artifacts.write_json(staging / DEPLOYMENT, table)
    return StageResult(STAGE, output_dir, table, time.perf_counter() - started)
