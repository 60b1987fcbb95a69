"""The pipeline's export stage: teacher and student to ONNX (fp32 + int8), and the deployment table.

Writes `export/teacher/`, `export/student/` (each a `scripts/export.py` folder) and `export/deployment.json`:
for each model and format, size on disk, latency at batch 1 and 32, dev accuracy and agreement with the
PyTorch teacher, all on the run's eval split.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipelines import artifacts
from pipelines.export import ExportSettings, ParitySet, run_export

FORMATS = (("pytorch", "PyTorch"), ("onnx_fp32", "ONNX fp32"), ("onnx_int8", "ONNX int8"))
DEPLOYMENT = "deployment.json"


def parity_set(data) -> ParitySet:
    """The run's prepared eval split as a parity set (texts, pairs, gold label ids)."""
    evaluation = data.eval
    return ParitySet(
        source="the run's eval split",
        texts=[str(t) for t in evaluation["text"]],
        pairs=[str(t) for t in evaluation["text_pair"]] if data.has_pair else None,
        labels=np.asarray(list(evaluation["label"]), dtype=np.int64),
    )


def deployment_rows(results: dict[str, object]) -> list[dict]:
    """One row per model and format, agreement measured against the PyTorch teacher's predictions."""
    teacher_predictions = results["teacher"].predictions["pytorch"]
    rows = []
    for model, result in results.items():
        for key, title in FORMATS:
            if key not in result.metrics:
                continue
            m = result.metrics[key]
            rows.append({
                "model": model, "format": key, "format_name": title, "size_mb": m["size_mb"],
                "latency_b1_ms": m.get("latency_b1_ms"), "latency_b32_ms": m.get("latency_b32_ms"),
                "dev_accuracy": m["dev_accuracy"],
                "agreement_with_teacher": float((result.predictions[key] == teacher_predictions).mean()),
                "int8_recipe": m.get("recipe"),
            })
    return rows


def run_export_stage(models: dict[str, Path], output_dir: Path, data, settings: ExportSettings,
                     overwrite: bool = False) -> dict:
    """Export each model (name -> PyTorch folder) into output_dir/name and write deployment.json."""
    began = time.perf_counter()
    artifacts.prepare_output_dir(output_dir, resume=False, overwrite=overwrite, stage="export",
                                 settings={"models": {k: str(v) for k, v in models.items()},
                                           "settings": vars(settings)})
    parity = parity_set(data)
    results = {name: run_export(folder, output_dir / name, parity, settings, overwrite=(output_dir / name).exists())
               for name, folder in models.items()}
    table = {"parity_rows": len(parity.texts), "rows": deployment_rows(results)}
    artifacts.write_json(output_dir / DEPLOYMENT, table)
    artifacts.write_json(output_dir / artifacts.MANIFEST, artifacts.manifest(
        "export", {"models": {k: str(v) for k, v in models.items()}, **vars(settings)}, data.fingerprint,
        {"total": time.perf_counter() - began}))
    artifacts.release_output_dir(output_dir)
    return table
