"""The causal-LM chain on the packaged SmolLM2-135M and the bundled Alpaca demo: fine-tune, distill, measure.

    python benchmarks/bench_causal_lm.py [--steps 30 --student-layers 15 --max-length 192 --train-rows 320]

Fine-tunes SmolLM2-135M with LoRA on the Alpaca rows (10% held out, seeded), then distills it into a student of
--student-layers of its 30 layers (token-level KD over the teacher's cached top-k at temperature 2, plus the LM
loss), both through the project's stages. Reports held-out perplexity before and after fine-tuning, the student's
perplexity and next-token agreement, greedy generation speed of both (tokens per second, one prompt at a time,
the same number of new tokens), the top-k cache's size and its KL against the full KL, and wall times.
Prints a table and writes benchmarks/results/causal_lm.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import provenance  # noqa: E402
from distill.config import DistillConfig, LossSettings, StudentSettings  # noqa: E402
from distill.stage import run_distill  # noqa: E402
from finetune.config import FinetuneConfig, LoraSettings  # noqa: E402
from finetune.stage import run_finetune  # noqa: E402
from pipelines.data import DataSettings  # noqa: E402
from pipelines.models import ModelSettings  # noqa: E402
from pipelines.training.settings import TrainSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--distill-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--train-rows", type=int, default=320, help="training rows kept (seeded), 10%% held out first")
    parser.add_argument("--student-layers", type=int, default=15)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--work", default="benchmarks/work/causal_lm")
    args = parser.parse_args()

    work = Path(args.work)
    began = time.perf_counter()
    finetune = FinetuneConfig(
        task="causal-lm", output_dir=str(work / "teacher"), model=ModelSettings(name="smollm2",
                                                                                max_length=args.max_length),
        data=DataSettings(train_file=str(ROOT / "data" / "alpaca" / "alpaca_en_demo.json"), validation_split=0.1,
                          max_train_samples=args.train_rows),
        lora=LoraSettings(r=16, alpha=32, dropout=0.05),
        train=TrainSettings(max_steps=args.steps, batch_size=args.batch_size, eval_batch_size=8, learning_rate=2e-4,
                            warmup=0.05, eval_strategy="no", logging_steps=10, seed=42),
        generation_prompts=4, max_new_tokens=48)
    teacher = run_finetune(finetune, overwrite=True)
    finetuned = time.perf_counter()
    distill = DistillConfig(
        output_dir=str(work / "student"), teacher=str(work / "teacher"),
        student=StudentSettings(layers=args.student_layers),
        loss=LossSettings(temperature=2.0, soft_weight=0.5, top_k=args.top_k),
        train=TrainSettings(max_steps=args.distill_steps, batch_size=args.batch_size, eval_batch_size=8,
                            learning_rate=2e-4, warmup=0.05, eval_strategy="no", logging_steps=10, seed=42))
    student = run_distill(distill, overwrite=True)
    distilled = time.perf_counter()

    m, t = student.metrics, teacher.metrics
    report = {
        "provenance": provenance(),
        "teacher_perplexity_before": t["eval"]["perplexity_before"],
        "teacher_perplexity_after": t["eval"]["perplexity"],
        "student_perplexity": m["student"]["perplexity"],
        "student_perplexity_ratio": m["perplexity_ratio"],
        "student_next_token_agreement": m["next_token_agreement"],
        "teacher_tokens_per_second": m["teacher"]["tokens_per_second"],
        "student_tokens_per_second": m["student"]["tokens_per_second"],
        "generation_speedup": m["speedup"],
        "student_layers": m["student"]["layers"],
        "teacher_layers": m["teacher"]["layers"],
        "top_k_cache": m["top_k_cache"],
        "eval_tokens": t["eval"]["tokens"],
        "data": t["data"],
        "settings": {"finetune_steps": args.steps, "distill_steps": args.distill_steps, "batch_size": args.batch_size,
                     "train_rows": args.train_rows, "machine_note": "2 CPU cores, shared with other work at times",
                     "max_length": args.max_length, "lora_r": 16, "temperature": 2.0, "soft_weight": 0.5},
        "seconds": {"finetune": finetuned - began, "distill": distilled - finetuned,
                    "finetune_train": t["train"]["train_runtime"], "distill_train": m["train"]["train_runtime"],
                    "top_k_cache": m["top_k_cache"]["seconds"]},
        "targets": {"fine_tuning_lowers_perplexity": t["eval"]["perplexity"] < t["eval"]["perplexity_before"],
                    "student_half_the_layers_or_fewer": 2 * m["student"]["layers"] <= m["teacher"]["layers"],
                    "student_perplexity_within_1_5x": m["perplexity_ratio"] <= 1.5,
                    "student_speed_1_8x_or_more": m["speedup"] >= 1.8},
        "generations": json.loads((work / "teacher" / "generations.json").read_text()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "causal_lm.json").write_text(json.dumps(report, indent=2) + "\n")
    for key in ("teacher_perplexity_before", "teacher_perplexity_after", "student_perplexity",
                "student_next_token_agreement", "teacher_tokens_per_second", "student_tokens_per_second",
                "generation_speedup", "student_layers", "teacher_layers"):
        print(f"{key:32} {report[key]:.4f}" if isinstance(report[key], float) else f"{key:32} {report[key]}")
    print(json.dumps(report["targets"]), json.dumps(report["seconds"]))


if __name__ == "__main__":
    main()
