"""Deployment on SST-2 dev: batch prediction speed, and each model as PyTorch, ONNX fp32 and ONNX int8.

    python benchmarks/bench_deploy.py [--teacher runs/sst2_minilm] [--student benchmarks/work/distill/layers3]

1. Batch prediction of the teacher over the 872 dev sentences, our inference path against
   `transformers.pipeline("text-classification")`:
   - like_for_like (the gain of the method): one process, both in fp32 at batch 32 with the same torch threads,
     the same model object, each warmed up on the same 64 sentences, then timed in ABBA rounds; the ratio of
     each round's pair and its spread. Ours is pipelines.inference.text_logits (length-sorted batches, dynamic
     padding), what scripts/predict.py runs.
   - defaults (what a user sees): `scripts/predict.py` with its defaults (bf16 autocast where the CPU has native
     bf16, batch 64, every core; its own timer: tokenizing and the model) against a pipeline with its defaults
     (batch 1) and a pipeline given batch_size=32 (the tuned baseline), each in a fresh process, timed on its
     first pass (model loaded before the timer, no warm-up on either side), the arms interleaved in ABBA rounds.
2. The teacher and the 3-layer student through `export.stage.run_export` (every int8 recipe measured,
   the most quantized one within 0.5 point of accuracy kept): size, latency at batch 1 and 32 (tokenization
   included, median), dev accuracy, agreement with the PyTorch teacher. Latency is measured again for each
   model and format in fresh processes, one model per process as where it is deployed, and the median of
   three processes is reported: measured inside this process, after it has run PyTorch, the ONNX batch-1
   time of the same model moved between 1.0 and 1.9 ms from run to run (the export-time figures are kept
   beside it as `export_time_latency_ms`).
With --prediction-only (or when the student is not there) part 2 is not run: the export rows of the
results file are kept as they were, under `export_rows_from`, with the commit that last wrote the file.
Prints a table and writes benchmarks/results/deploy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import abba, pair_ratios, provenance, timed_abba  # noqa: E402
from pipelines.environment import native_bf16  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "deploy"
RESULTS = ROOT / "benchmarks" / "results"
DEV = ROOT / "data" / "sst2" / "dev.tsv"
FORMATS = ("pytorch", "onnx_fp32", "onnx_int8")
MAX_LENGTH = 128
WARMUP_ROWS = 64


def script_seconds(model: Path) -> tuple[float, Path]:
    """Seconds scripts/predict.py (its defaults) reports for the dev file, from its own timer (tokens + model)."""
    out = WORK / "predictions.csv"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/predict.py"), "--model", str(model), "--input-file", str(DEV),
         "--text-column", "sentence", "--output-file", str(out), "--overwrite", "--no-progress"],
        capture_output=True, text=True, check=True)
    return float(re.search(r"in ([0-9.]+) s \(", run.stdout).group(1)), out


def pipeline_seconds(model: Path, batch_size: int | None) -> tuple[float, list[str]]:
    """Seconds a transformers pipeline (batch_size None: its default) takes over the dev file in a fresh process."""
    command = [sys.executable, __file__, "--pipeline-seconds-of", str(model), str(batch_size or 0)]
    answer = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    return answer["seconds"], answer["labels"]


def print_pipeline_seconds(model: str, batch_size: str) -> None:
    from transformers import pipeline

    texts = dev_texts()
    options = {"batch_size": int(batch_size)} if int(batch_size) else {}
    classify = pipeline("text-classification", model=model, **options)
    began = time.perf_counter()
    labels = [o["label"] for o in classify(texts)]
    print(json.dumps({"seconds": time.perf_counter() - began, "labels": labels}))


def dev_texts() -> list[str]:
    import pandas as pd

    return pd.read_csv(DEV, sep="\t", quoting=3, dtype=str, keep_default_na=False)["sentence"].tolist()


def defaults_comparison(model: Path, rounds: int) -> dict:
    """predict.py's defaults against a pipeline's defaults and a pipeline at batch 32, fresh processes, ABBA."""
    import pandas as pd

    arms = {"predict.py": lambda: script_seconds(model),
            "pipeline": lambda: pipeline_seconds(model, None),
            "pipeline_batch32": lambda: pipeline_seconds(model, 32)}
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    labels: dict[str, list[str]] = {}
    for name in abba(list(arms), rounds):
        took, answer = arms[name]()
        seconds[name].append(took)
        labels[name] = pd.read_csv(answer)["predicted_label"].tolist() if isinstance(answer, Path) else answer
    n = len(labels["pipeline"])
    return {
        "speedup_vs_pipeline_defaults": pair_ratios(seconds, "predict.py", "pipeline"),
        "speedup_vs_pipeline_batch32": pair_ratios(seconds, "predict.py", "pipeline_batch32"),
        "rows_per_second": {name: n / statistics.median(times) for name, times in seconds.items()},
        "seconds": seconds,
        "same_labels_as_pipeline": sum(a == b for a, b in zip(labels["predict.py"], labels["pipeline"],
                                                              strict=True)) / n,
        "settings": {"predict.py": "its defaults: --precision auto (bf16 autocast here: "
                                   f"{native_bf16()}), --batch-size 64, every core",
                     "pipeline": "pipeline('text-classification', model=DIR): batch 1, torch's default threads",
                     "pipeline_batch32": "the same with batch_size=32"},
        "timing": f"fresh process per figure, first pass over the dev file after loading, {rounds} ABBA rounds",
    }


def like_for_like(model_dir: Path, rounds: int, batch_size: int = 32) -> dict:
    """Our inference path against a pipeline in one process: fp32, batch 32, same threads, same warm-up."""
    from transformers import pipeline

    from pipelines.inference import text_logits, torch_backend
    from pipelines.models import load_trained_classifier

    texts = dev_texts()
    model, tokenizer, labels = load_trained_classifier(str(model_dir))
    ours = torch_backend(model, tokenizer, max_length=MAX_LENGTH)
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, batch_size=batch_size,
                        device="cpu")
    arms = {"ours": lambda rows: text_logits(ours, rows, batch_size=batch_size)[0].argmax(1).tolist(),
            "pipeline": lambda rows: [labels.index(o["label"]) for o in
                                      classify(rows, truncation=True, max_length=MAX_LENGTH)]}
    seconds, predicted = timed_abba(arms, texts, texts[:WARMUP_ROWS], rounds)
    return {
        "speedup": pair_ratios(seconds, "ours", "pipeline"),
        "rows_per_second": {name: len(texts) / statistics.median(times) for name, times in seconds.items()},
        "seconds": seconds,
        "same_labels": float(sum(a == b for a, b in zip(predicted["ours"], predicted["pipeline"], strict=True))
                             / len(texts)),
        "settings": {"precision": "fp32", "batch_size": batch_size, "torch_threads": _threads(),
                     "warm_up": f"each side labels the first {WARMUP_ROWS} dev sentences before timing",
                     "order": f"{rounds} ABBA rounds in one process, the same model object"},
    }


def earlier_export_rows() -> dict:
    """The export rows (models, ratios, setup) of the results file as it is, with the commit that wrote it."""
    previous = json.loads((RESULTS / "deploy.json").read_text()) if (RESULTS / "deploy.json").is_file() else {}
    kept = {key: previous[key] for key in ("models", "ratios", "setup") if key in previous}
    source = previous.get("export_rows_from") or {"git_commit": subprocess.run(
        ["git", "log", "-1", "--format=%H", "--", "benchmarks/results/deploy.json"], cwd=ROOT,
        capture_output=True, text=True).stdout.strip() or None}
    return {**kept, "export_rows_from": source} if kept else {}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def fresh_process_latency(folder: Path, variant: str, threads: int, processes: int) -> dict:
    """Median over `processes` fresh Python processes of export.stage.measure_latencies for one model."""
    runs = []
    for _ in range(processes):
        run = subprocess.run([sys.executable, __file__, "--latency-of", str(folder), variant, str(threads)],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(run.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def print_latency_of(folder: str, variant: str, threads: str) -> None:
    from export.stage import measure_latencies
    from pipelines.inference import load_backend

    print(json.dumps(measure_latencies(load_backend(folder, variant=variant, num_threads=int(threads)),
                                       dev_texts())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=str(ROOT / "runs" / "sst2_minilm"))
    parser.add_argument("--student", default=str(ROOT / "benchmarks" / "work" / "distill" / "layers3"))
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds of the prediction-speed comparisons")
    parser.add_argument("--latency-processes", type=int, default=3, help="fresh processes per latency figure")
    parser.add_argument("--latency-of", nargs=3, metavar=("FOLDER", "VARIANT", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--prediction-only", action="store_true",
                        help="measure prediction speed only; keep the export rows of the previous results file")
    parser.add_argument("--pipeline-seconds-of", nargs=2, metavar=("FOLDER", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.latency_of:
        print_latency_of(*args.latency_of)
        return
    if args.pipeline_seconds_of:
        print_pipeline_seconds(*args.pipeline_seconds_of)
        return

    import torch

    from export.config import ExportConfig
    from export.stage import run_export

    teacher, student = Path(args.teacher), Path(args.student)
    if not (teacher / "model.safetensors").is_file():
        sys.exit(f"{teacher} has no model; make it first with: python scripts/finetune.py --config "
                 "configs/sst2_minilm.yaml")
    if not args.prediction_only and not (student / "model.safetensors").is_file():
        sys.exit(f"{student} has no model; make it first with: python benchmarks/bench_distill.py --students "
                 "layers3 (or give --prediction-only)")
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    threads = torch.get_num_threads()

    fair = like_for_like(teacher, args.rounds)
    defaults = defaults_comparison(teacher, args.rounds)

    if args.prediction_only:
        result = {"like_for_like": fair, "defaults": defaults, **earlier_export_rows()}
        result["prediction_setup"] = {"teacher": os.path.relpath(teacher, ROOT),
                                      "wall_seconds": time.perf_counter() - started}
        result["provenance"] = provenance()
    else:
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
        result = {
            "like_for_like": fair,
            "defaults": defaults,
            "models": models,
            "ratios": ratios,
            "setup": {
                "teacher": os.path.relpath(teacher, ROOT), "student": os.path.relpath(student, ROOT),
                "data": "SST-2 dev (872 sentences)",
                "latency": f"median over {args.latency_processes} fresh processes of the median of 50 batches of 1 "
                           "and of 10 batches of 32, tokenization included",
                "int8_budget": "at most 0.5 point of dev accuracy below the PyTorch model",
                "wall_seconds": time.perf_counter() - started,
            },
            "provenance": provenance(),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deploy.json").write_text(json.dumps(result, indent=2) + "\n")

    speedup = fair["speedup"]
    print(f"like for like (fp32, batch 32, same threads and warm-up): ours {fair['rows_per_second']['ours']:.0f} "
          f"rows/s, pipeline {fair['rows_per_second']['pipeline']:.0f} rows/s -> {speedup['median']:.2f}x "
          f"(rounds {speedup['min']:.2f}-{speedup['max']:.2f}x), same labels on {fair['same_labels']:.4f}")
    for arm, key in (("pipeline", "speedup_vs_pipeline_defaults"), ("pipeline_batch32", "speedup_vs_pipeline_batch32")):
        ratio = defaults[key]
        print(f"defaults: predict.py {defaults['rows_per_second']['predict.py']:.0f} rows/s against {arm} "
              f"{defaults['rows_per_second'][arm]:.0f} rows/s -> {ratio['median']:.2f}x "
              f"({ratio['min']:.2f}-{ratio['max']:.2f}x)")
    if "export_rows_from" in result:
        print(f"export rows kept from commit {result['export_rows_from']['git_commit']}")
        print(f"wrote {RESULTS / 'deploy.json'}")
        return
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
