"""The GPT-style classifier: SmolLM2-135M + LoRA on SST-2, and its label-level distillation into MiniLM.

    python benchmarks/bench_gpt_classifier.py            # trains what is not yet in its folder (about an hour)
    python benchmarks/bench_gpt_classifier.py --retrain  # trains both again
    python benchmarks/bench_gpt_classifier.py --collect  # reads the finished folders (wall times: previous file)

The teacher is configs/sst2_smollm2.yaml (runs/sst2_smollm2: checkpoints chosen on 3% of the training rows, the
872 SST-2 dev sentences scored once at the end); the student is configs/distill_sst2_smollm2.yaml
(runs/sst2_smollm2_minilm: the packaged all-MiniLM-L6-v2, its own tokenizer, the teacher's logits cached). Each
stage runs as its script, timed from start to end (model load, tokenization, training, evaluation). Retention,
agreement and the speed-ups (dev sentences at batch 1 and 32, same harness for both models) are the distillation
stage's own figures (distill_metrics.json). The BERT-style teacher recipe's row (configs/sst2_minilm.yaml, from
benchmarks/results/teacher_sst2_minilm.json) is copied beside them for comparison. Prints a table and writes
benchmarks/results/gpt_classifier.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import provenance  # noqa: E402

TEACHER_CONFIG = "configs/sst2_smollm2.yaml"
STUDENT_CONFIG = "configs/distill_sst2_smollm2.yaml"
TEACHER_DIR = ROOT / "runs" / "sst2_smollm2"
STUDENT_DIR = ROOT / "runs" / "sst2_smollm2_minilm"
RESULTS = ROOT / "benchmarks" / "results" / "gpt_classifier.json"
BERT_TEACHER = ROOT / "benchmarks" / "results" / "teacher_sst2_minilm.json"


def run_stage(script: str, config: str) -> float:
    """Run one stage's script on its config (overwriting its folder); its wall seconds."""
    began = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--config", config, "--overwrite"], cwd=ROOT,
                   check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true", help="train both stages again")
    parser.add_argument("--collect", action="store_true", help="only read the finished folders")
    args = parser.parse_args()
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    walls = {"teacher": previous.get("teacher_wall_seconds"), "student": previous.get("student_wall_seconds")}
    for side, script, config, folder in (("teacher", "finetune.py", TEACHER_CONFIG, TEACHER_DIR),
                                         ("student", "distill.py", STUDENT_CONFIG, STUDENT_DIR)):
        done = (folder / "metrics.json").exists()
        if not args.collect and (args.retrain or not done):
            walls[side] = run_stage(script, config)
    teacher = json.loads((TEACHER_DIR / "metrics.json").read_text())
    distilled = json.loads((STUDENT_DIR / "distill_metrics.json").read_text())
    bert = json.loads(BERT_TEACHER.read_text())
    results = {
        "teacher_config": TEACHER_CONFIG,
        "student_config": STUDENT_CONFIG,
        "teacher_dev_accuracy": teacher["eval"]["accuracy"],
        "teacher_dev_macro_f1": teacher["eval"]["macro_f1"],
        "teacher_wall_seconds": walls["teacher"],
        "teacher_train_examples": teacher["data"]["train_examples"],
        "student_dev_accuracy": distilled["student"]["dev_accuracy"],
        "student_wall_seconds": walls["student"],
        "retention": distilled["retention"],
        "agreement": distilled["agreement"],
        "speedup_b1": distilled["speedup_b1"],
        "speedup_b32": distilled["speedup_b32"],
        "teacher": distilled["teacher"],
        "student": distilled["student"],
        "bert_teacher_recipe": {"config": "configs/sst2_minilm.yaml", "dev_accuracy": bert["dev_accuracy"],
                                "wall_seconds": bert["wall_seconds"]},
        "setup": provenance(),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    rows = [("SmolLM2-135M + LoRA (teacher)", results["teacher_dev_accuracy"], walls["teacher"], "1.00x"),
            ("MiniLM student of it", results["student_dev_accuracy"], walls["student"],
             f"{results['speedup_b1']:.2f}x b1, {results['speedup_b32']:.2f}x b32"),
            ("MiniLM teacher recipe (BERT-style)", bert["dev_accuracy"], bert["wall_seconds"], "")]
    print(f"{'model':38} {'dev acc':>8} {'wall s':>8}  speed")
    for name, accuracy, wall, speed in rows:
        print(f"{name:38} {accuracy:8.4f} {wall if wall is None else round(wall):>8}  {speed}")
    print(f"retention {results['retention']:.3f}, agreement {results['agreement']:.3f}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
