"""Deployment on SST-2 dev: batch prediction speed, and each model as PyTorch, ONNX fp32 and ONNX int8.

    python benchmarks/bench_deploy.py [--teacher runs/sst2_minilm] [--student benchmarks/work/distill/layers3]

1. predict_speedup: rows per second of `scripts/predict.py` (run as a script with its defaults; its own timer
   covers tokenizing and the model, not loading or file I/O) over `transformers.pipeline("text-classification",
   model=DIR, batch_size=32)` called on the same 872 sentences (model loaded before the timer). Best of 3 each.
   The default precision is auto (bf16 autocast where the CPU has native bf16); fp32 is measured as well.
2. The teacher and the 3-layer student through `export.stage.run_export` (every int8 recipe measured,
   the most quantized one within 0.5 point of accuracy kept): size, latency at batch 1 and 32 (tokenization
   included, median), dev accuracy, agreement with the PyTorch teacher. Latency is measured again for each
   model and format in fresh processes, one model per process as where it is deployed, and the median of
   three processes is reported: measured inside this process, after it has run PyTorch, the ONNX batch-1
   time of the same model moved between 1.0 and 1.9 ms from run to run (the export-time figures are kept
   beside it as `export_time_latency_ms`).
Prints a table and writes benchmarks/results/deploy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORK = ROOT / "benchmarks" / "work" / "deploy"
RESULTS = ROOT / "benchmarks" / "results"
DEV = ROOT / "data" / "sst2" / "dev.tsv"
FORMATS = ("pytorch", "onnx_fp32", "onnx_int8")


def script_rows_per_second(model: Path, repeats: int, precision: str) -> tuple[float, Path]:
    """Best rows/s that scripts/predict.py reports for the dev file (its timer: tokenization + model)."""
    best, out = 0.0, WORK / f"predictions-{precision}.csv"
    for _ in range(repeats):
        run = subprocess.run(
            [sys.executable, str(ROOT / "scripts/predict.py"), "--model", str(model), "--input-file", str(DEV),
             "--text-column", "sentence", "--output-file", str(out), "--overwrite", "--no-progress",
             "--precision", precision], capture_output=True, text=True, check=True)
        best = max(best, float(re.search(r"\((\d+) rows/s\)", run.stdout).group(1)))
    return best, out


def fresh_process_latency(folder: Path, variant: str, threads: int, processes: int) -> dict:
    """Median over `processes` fresh Python processes of export.stage.measure_latencies for one model."""
    runs = []
    for _ in range(processes):
        run = subprocess.run([sys.executable, __file__, "--latency-of", str(folder), variant, str(threads)],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(run.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def print_latency_of(folder: str, variant: str, threads: str) -> None:
    import pandas as pd

    from export.stage import measure_latencies
    from pipelines.inference import load_backend

    texts = pd.read_csv(DEV, sep="\t", quoting=3, dtype=str, keep_default_na=False)["sentence"].tolist()
    print(json.dumps(measure_latencies(load_backend(folder, variant=variant, num_threads=int(threads)), texts)))


def pipeline_rows_per_second(model: Path, texts: list[str], repeats: int) -> tuple[float, list[str]]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(model), batch_size=32)
    classify(texts[:64])  # warm-up
    best, labels = 0.0, []
    for _ in range(repeats):
        began = time.perf_counter()
        outputs = classify(texts)
        best = max(best, len(texts) / (time.perf_counter() - began))
        labels = [o["label"] for o in outputs]
    return best, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=str(ROOT / "runs" / "sst2_minilm"))
    parser.add_argument("--student", default=str(ROOT / "benchmarks" / "work" / "distill" / "layers3"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-processes", type=int, default=3, help="fresh processes per latency figure")
    parser.add_argument("--latency-of", nargs=3, metavar=("FOLDER", "VARIANT", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.latency_of:
        print_latency_of(*args.latency_of)
        return

    import numpy as np
    import pandas as pd
    import torch

    from export.config import ExportConfig
    from export.stage import run_export

    teacher, student = Path(args.teacher), Path(args.student)
    for path, hint in ((teacher, "python scripts/finetune.py --config configs/sst2_minilm.yaml"),
                       (student, "python benchmarks/bench_distill.py --students layers3")):
        if not (path / "model.safetensors").is_file():
            sys.exit(f"{path} has no model; make it first with: {hint}")
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    threads = torch.get_num_threads()

    dev = pd.read_csv(DEV, sep="\t", quoting=3, dtype=str, keep_default_na=False)
    texts = dev["sentence"].tolist()
    baseline, baseline_labels = pipeline_rows_per_second(teacher, texts, args.repeats)
    ours, same_labels = {}, {}
    for precision in ("auto", "fp32"):
        ours[precision], predictions_file = script_rows_per_second(teacher, args.repeats, precision)
        labels = pd.read_csv(predictions_file)["predicted_label"].tolist()
        same_labels[precision] = float(np.mean([a == b for a, b in zip(labels, baseline_labels, strict=True)]))

    exported = run_export(ExportConfig(model=str(teacher), compare=str(student), output_dir=str(WORK / "export"),
                                       eval_file=str(DEV), text_column="sentence", label_column="label",
                                       max_accuracy_drop=0.005, try_all_int8=True, num_threads=threads),
                          overwrite=(WORK / "export").exists())
    rows = exported.metrics["rows"]
    names = ("teacher", "student")
    models = {name: {row["format"]: {k: row[k] for k in ("latency_b1_ms", "latency_b32_ms", "size_mb",
                                                          "dev_accuracy", "agreement_with_teacher")}
                     for row in rows if row["model"] == name} for name in names}
    exports = {name: json.loads((WORK / "export" / name / "export_metrics.json").read_text()) for name in names}
    sources = {"teacher": teacher, "student": student}
    for name, fmt in ((n, f) for n in names for f in FORMATS):
        folder, variant = (sources[name], "auto") if fmt == "pytorch" else (WORK / "export" / name,
                                                                          fmt.removeprefix("onnx_"))
        row = models[name][fmt]
        row["export_time_latency_ms"] = {"b1": row["latency_b1_ms"], "b32": row["latency_b32_ms"]}
        row.update(fresh_process_latency(folder, variant, threads, args.latency_processes))
    for name, metrics in exports.items():
        models[name]["onnx_fp32"]["max_abs_logit_diff"] = metrics["onnx_fp32"]["max_abs_logit_diff"]
        models[name]["onnx_int8"]["recipe"] = metrics["onnx_int8"]["recipe"]
        models[name]["onnx_int8"]["recipes_tried"] = metrics["onnx_int8"]["candidates"]

    t, s = models["teacher"], models["student"]
    ratios = {
        "teacher_int8_vs_pytorch_b1": t["pytorch"]["latency_b1_ms"] / t["onnx_int8"]["latency_b1_ms"],
        "teacher_int8_accuracy_change": t["onnx_int8"]["dev_accuracy"] - t["pytorch"]["dev_accuracy"],
        "student_int8_vs_pytorch_b1": s["pytorch"]["latency_b1_ms"] / s["onnx_int8"]["latency_b1_ms"],
        "student_int8_accuracy_change": s["onnx_int8"]["dev_accuracy"] - s["pytorch"]["dev_accuracy"],
        "student_int8_vs_teacher_pytorch_b1": t["pytorch"]["latency_b1_ms"] / s["onnx_int8"]["latency_b1_ms"],
        "student_int8_vs_teacher_pytorch_accuracy": s["onnx_int8"]["dev_accuracy"] - t["pytorch"]["dev_accuracy"],
        "teacher_int8_vs_pytorch_b32": t["pytorch"]["latency_b32_ms"] / t["onnx_int8"]["latency_b32_ms"],
    }
    from pipelines.environment import native_bf16

    result = {
        "predict_speedup": ours["auto"] / baseline,
        "predict_speedup_fp32": ours["fp32"] / baseline,
        "predict_rows_per_second": {"scripts/predict.py (default, --precision auto)": ours["auto"],
                                    "scripts/predict.py --precision fp32": ours["fp32"],
                                    "transformers.pipeline": baseline,
                                    "same_labels_as_pipeline": same_labels,
                                    "auto_means_bf16_here": native_bf16()},
        "models": models,
        "ratios": ratios,
        "setup": {
            "teacher": os.path.relpath(teacher, ROOT), "student": os.path.relpath(student, ROOT),
            "data": "SST-2 dev (872 sentences)", "machine": f"{platform.machine()}, {threads} threads, CPU",
            "latency": f"median over {args.latency_processes} fresh processes of the median of 50 batches of 1 "
                       "and of 10 batches of 32, tokenization included",
            "int8_budget": "at most 0.5 point of dev accuracy below the PyTorch model",
            "wall_seconds": time.perf_counter() - started,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deploy.json").write_text(json.dumps(result, indent=2) + "\n")

    for precision, rate in ours.items():
        print(f"predict: scripts/predict.py --precision {precision} {rate:.0f} rows/s vs transformers.pipeline "
              f"{baseline:.0f} rows/s -> {rate / baseline:.2f}x (same labels on {same_labels[precision]:.4f})")
    print(f"{'model':<8} {'format':<10} {'size MB':>8} {'b1 ms':>7} {'b32 ms':>7} {'dev acc':>8} {'agree':>6}")
    for name in models:
        for fmt in FORMATS:
            m = models[name][fmt]
            print(f"{name:<8} {fmt:<10} {m['size_mb']:>8.1f} {m['latency_b1_ms']:>7.2f} {m['latency_b32_ms']:>7.1f} "
                  f"{m['dev_accuracy']:>8.4f} {m['agreement_with_teacher']:>6.3f}")
    for key, value in ratios.items():
        print(f"{key:<42} {value:+.4f}" if "accuracy" in key else f"{key:<42} {value:.2f}x")
    print(f"wrote {RESULTS / 'deploy.json'}")


if __name__ == "__main__":
    main()
