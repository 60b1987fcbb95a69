"""The causal-LM chain on the packaged SmolLM2-135M and the bundled Alpaca demo: fine-tune, distill, measure.

    python benchmarks/bench_causal_lm.py [--steps 30 --distill-steps 30 --student-layers 14 --max-length 192]
    python benchmarks/bench_causal_lm.py --reuse-teacher --distill-steps 150   # distill the teacher already there
    python benchmarks/bench_causal_lm.py --collect    # train nothing: re-measure speed, re-read the folders

Fine-tunes SmolLM2-135M with LoRA on the Alpaca rows (10% held out, seeded), then distills it into students of
--student-layers of its 30 layers (token-level KD over the teacher's cached top-k at temperature T, plus the LM
loss), both through the project's stages: one student per --arms entry, the layers picked by block influence
(influence) or as the last of each equal group (groups), the same steps and data for each, the first the headline.
Reports held-out perplexity before and after fine-tuning, the student's
perplexity and next-token agreement, greedy generation speed of both (tokens per second, one prompt at a time,
the same number of new tokens, teacher and headline student interleaved in ABBA rounds; each stage's own single
timing is kept per arm), the top-k cache's size and its KL against the full KL, and wall times.
Prints a table and writes benchmarks/results/causal_lm.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import pair_ratios, provenance, timed_abba  # noqa: E402
from distill.config import DistillConfig, LossSettings, StudentSettings  # noqa: E402
from distill.stage import run_distill  # noqa: E402
from finetune.config import FinetuneConfig, LoraSettings  # noqa: E402
from finetune.stage import run_finetune  # noqa: E402
from pipelines.data import DataSettings  # noqa: E402
from pipelines.models import ModelSettings  # noqa: E402
from pipelines.training.settings import TrainSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def distill_arm(args, work: Path, choose: str) -> tuple[dict, float]:
    """One student of --student-layers picked by `choose`, distilled from work/teacher: its metrics, its wall seconds.
    The arms share one top-k cache (work/cache)."""
    began = time.perf_counter()
    distill = DistillConfig(
        output_dir=str(work / f"student_{choose}"), teacher=str(work / "teacher"), cache_dir=str(work / "cache"),
        student=StudentSettings(layers=args.student_layers, choose_layers=choose),
        loss=LossSettings(temperature=args.temperature, soft_weight=0.5, top_k=args.top_k),
        train=TrainSettings(max_steps=args.distill_steps, batch_size=args.batch_size, eval_batch_size=8,
                            learning_rate=2e-4, warmup=0.05, eval_strategy="no", logging_steps=10, seed=42))
    return run_distill(distill, overwrite=True).metrics, time.perf_counter() - began


def interleaved_speed(work: Path, student_dir: Path, new_tokens: int, rounds: int) -> dict:
    """Greedy generation of the same eval prompts by teacher and student in ABBA rounds (exactly `new_tokens` per
    prompt, one prompt at a time, after a warm-up): tokens per second each round and the student/teacher ratio."""
    from pipelines.lm_data import PROMPT, recorded_lm_data
    from pipelines.lm_eval import generate
    from pipelines.models import load_trained_causal_lm

    data, _ = recorded_lm_data(work / "teacher")
    prompts = [p for p in data.eval[PROMPT] if p][:8]
    models = {"teacher": load_trained_causal_lm(str(work / "teacher")),
              "student": load_trained_causal_lm(str(student_dir))}
    for model, _ in models.values():
        model.generation_config.min_new_tokens = new_tokens
    arms = {name: (lambda chosen, m=model, t=tokenizer: generate(m, t, chosen, new_tokens, batch_size=1))
            for name, (model, tokenizer) in models.items()}
    seconds, _ = timed_abba(arms, prompts, prompts[:1], rounds)
    tokens = len(prompts) * new_tokens
    return {"prompts": len(prompts), "new_tokens": new_tokens, "rounds": rounds,
            "teacher_tokens_per_second": [tokens / x for x in seconds["teacher"]],
            "student_tokens_per_second": [tokens / x for x in seconds["student"]],
            "speedup": pair_ratios(seconds, faster="student", slower="teacher")}


def arm_row(m: dict, seconds: float) -> dict:
    return {"layer_map": m["student"]["layer_map"], "student_perplexity_untrained": m["student"]["perplexity_before"],
            "student_perplexity": m["student"]["perplexity"],
            "student_perplexity_ratio": m["perplexity_ratio"],
            "student_next_token_agreement": m["next_token_agreement"],
            "student_tokens_per_second": m["student"]["tokens_per_second"],
            "teacher_tokens_per_second": m["teacher"]["tokens_per_second"], "generation_speedup": m["speedup"],
            "distill_seconds": seconds, "distill_train_seconds": m["train"]["train_runtime"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--distill-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--train-rows", type=int, default=320, help="training rows kept (seeded), 10%% held out first")
    parser.add_argument("--student-layers", type=int, default=14)
    parser.add_argument("--arms", default="influence,groups",
                        help="how each student picks its layers (student.choose_layers); the first is the headline")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--reuse-teacher", action="store_true",
                        help="distill the teacher already in the work folder (its figures from its metrics.json)")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: read the teacher and the arms' students from the work folder")
    parser.add_argument("--speed-rounds", type=int, default=4, help="ABBA rounds of the generation-speed timing")
    parser.add_argument("--work", default="benchmarks/work/causal_lm")
    args = parser.parse_args()

    work = Path(args.work)
    previous = json.loads((RESULTS / "causal_lm.json").read_text()) if (RESULTS / "causal_lm.json").exists() else {}
    began = time.perf_counter()
    if (args.reuse_teacher or args.collect) and (work / "teacher" / "metrics.json").exists():
        t = json.loads((work / "teacher" / "metrics.json").read_text())
        finetune_seconds = previous.get("seconds", {}).get("finetune")
    else:
        finetune = FinetuneConfig(
            task="causal-lm", output_dir=str(work / "teacher"), model=ModelSettings(name="smollm2",
                                                                                    max_length=args.max_length),
            data=DataSettings(train_file=str(ROOT / "data" / "alpaca" / "alpaca_en_demo.json"), validation_split=0.1,
                              max_train_samples=args.train_rows),
            lora=LoraSettings(r=16, alpha=32, dropout=0.05),
            train=TrainSettings(max_steps=args.steps, batch_size=args.batch_size, eval_batch_size=8,
                                learning_rate=2e-4, warmup=0.05, eval_strategy="no", logging_steps=10, seed=42),
            generation_prompts=4, max_new_tokens=48)
        t = run_finetune(finetune, overwrite=True).metrics
        finetune_seconds = time.perf_counter() - began
    arms = {}
    previous_arms = previous.get("layer_choice_arms", {})
    for choose in args.arms.split(","):
        if args.collect:
            arms[choose] = (json.loads((work / f"student_{choose}" / "metrics.json").read_text()),
                            previous_arms.get(choose, {}).get("distill_seconds"))
        else:
            arms[choose] = distill_arm(args, work, choose)
    headline = args.arms.split(",")[0]
    m, distill_seconds = arms[headline]
    speed = interleaved_speed(work, work / f"student_{headline}", 32, args.speed_rounds)
    report = {
        "provenance": provenance(),
        "teacher_perplexity_before": t["eval"]["perplexity_before"],
        "teacher_perplexity_after": t["eval"]["perplexity"],
        "student_perplexity": m["student"]["perplexity"],
        "student_perplexity_ratio": m["perplexity_ratio"],
        "student_next_token_agreement": m["next_token_agreement"],
        "teacher_tokens_per_second": statistics.median(speed["teacher_tokens_per_second"]),
        "student_tokens_per_second": statistics.median(speed["student_tokens_per_second"]),
        "generation_speedup": speed["speedup"]["median"],
        "generation_speed": speed,
        "student_layers": m["student"]["layers"],
        "teacher_layers": m["teacher"]["layers"],
        "student_choose_layers": headline,
        "layer_choice_arms": {choose: arm_row(*arms[choose]) for choose in arms},
        "teacher_layer_influence": next((a[0]["student"]["teacher_layer_influence"] for a in arms.values()
                                         if a[0]["student"]["teacher_layer_influence"]), None),
        "top_k_cache": m["top_k_cache"],
        "eval_tokens": t["eval"]["tokens"],
        "data": t["data"],
        "settings": {"finetune_steps": t["train"]["global_step"], "distill_steps": m["train"]["global_step"],
                     "batch_size": args.batch_size, "train_rows": args.train_rows,
                     "machine_note": "2 CPU cores", "max_length": args.max_length, "lora_r": 16,
                     "temperature": args.temperature, "soft_weight": 0.5, "teacher_reused": args.reuse_teacher},
        "seconds": {"finetune": finetune_seconds, "distill": distill_seconds,
                    "finetune_train": t["train"]["train_runtime"], "distill_train": m["train"]["train_runtime"],
                    "top_k_cache": max(a[0]["top_k_cache"]["seconds"] for a in arms.values())},
        "targets": {"fine_tuning_lowers_perplexity": t["eval"]["perplexity"] < t["eval"]["perplexity_before"],
                    "student_half_the_layers_or_fewer": 2 * m["student"]["layers"] <= m["teacher"]["layers"],
                    "student_perplexity_within_1_5x": m["perplexity_ratio"] <= 1.5,
                    "student_speed_1_8x_or_more": speed["speedup"]["median"] >= 1.8},
        "generations": json.loads((work / "teacher" / "generations.json").read_text()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "causal_lm.json").write_text(json.dumps(report, indent=2) + "\n")
    for key in ("teacher_perplexity_before", "teacher_perplexity_after", "student_perplexity",
                "student_next_token_agreement", "teacher_tokens_per_second", "student_tokens_per_second",
                "generation_speedup", "student_layers", "teacher_layers"):
        print(f"{key:32} {report[key]:.4f}" if isinstance(report[key], float) else f"{key:32} {report[key]}")
    print(f"{'layers by':12} {'untrained':>12} {'perplexity':>12} {'agreement':>10} {'speed-up':>9}  layer map")
    for choose, row in report["layer_choice_arms"].items():
        print(f"{choose:12} {row['student_perplexity_untrained']:12.1f} {row['student_perplexity']:12.2f} "
              f"{row['student_next_token_agreement']:10.3f} "
              f"{row['generation_speedup']:9.2f}  {row['layer_map']}")
    print(json.dumps(report["targets"]), json.dumps(report["seconds"]))


if __name__ == "__main__":
    main()
