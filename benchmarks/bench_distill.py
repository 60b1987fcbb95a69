"""Distillation from the SST-2 teacher: students' accuracy, retention, agreement and CPU speed-up.

    python benchmarks/bench_distill.py [--teacher runs/sst2_minilm] [--students layers3,layers2,narrow]

Students not named in --students keep their rows from the previous results file (when it has the same
teacher accuracy); every row records the git commit it was measured at (and git_dirty: tracked files changed).

Every student learns from the same teacher folder (the configs/sst2_minilm.yaml recipe) on the data the
teacher was trained on (its data.json: SST-2 train minus the 3% it chose its checkpoints on) for its recipe's
epochs, with length-grouped batches. It is evaluated after each epoch (the 2-layer student every 500 steps) on
that held-out 3% and the best evaluation is kept; the 872 dev sentences are scored once, at the end
(dev_accuracy). Dev is also scored at every evaluation beside it, so each row shows what choosing on dev would
have reported (dev_accuracy_if_selected_on_dev). Rows of earlier runs, chosen on dev, are kept apart in
previous_students.
Teacher logits are cached once (benchmarks/work/cache) and shared by the students; students trained with
the hidden-state loss run the teacher on every batch instead, as that loss needs its hidden states. The
precomputed-vs-online ratio times the same logit-only distillation steps of the 3-layer student with the
teacher run on every batch over the same steps with cached logits. Prints a table, writes
benchmarks/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import ReportedSetTracker, provenance  # noqa: E402
from distill.config import AugmentSettings, DistillConfig, LossSettings, StudentSettings  # noqa: E402
from pipelines.artifacts import git_state  # noqa: E402
from pipelines.data import DataSettings, recorded_data  # noqa: E402
from pipelines.training.settings import TrainSettings  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "distill"
RESULTS = ROOT / "benchmarks" / "results"

STUDENTS = {
    # name: (student settings, loss settings, augmentation, train extras). The layer students learn the teacher's
    # hidden states and attention maps too (student layer i -> the teacher layer it was copied from; attention MSE
    # over real token pairs, weight 10 as the maps' squared errors are ~1e-3). The runs that chose these recipes
    # (layer maps, epochs, augmentation, losses) are in docs/experiments.md.
    "layers3": (StudentSettings(layer_map=[0, 2, 5]),
                LossSettings(temperature=2.0, soft_weight=0.5, hidden_weight=1.0, attention_weight=10.0),
                AugmentSettings(), {}),
    "layers2": (StudentSettings(layer_map=[2, 5]),
                LossSettings(temperature=2.0, soft_weight=0.5, hidden_weight=1.0, attention_weight=10.0),
                AugmentSettings(copies=2, min_words=10),
                {"epochs": 3.0, "eval_strategy": "steps", "eval_steps": 500}),
    # The narrow student starts from teacher layers 0 and 5 cut to 256 wide (8 heads of 32, 768 feed-forward
    # neurons).
    "narrow": (
        StudentSettings(hidden_size=256, num_hidden_layers=2, intermediate_size=768),
        LossSettings(temperature=2.0, soft_weight=0.9, hidden_weight=1.0),
        AugmentSettings(copies=1),
        {"learning_rate": 2e-4},
    ),
}


def config_for(name: str, teacher: Path, **overrides) -> DistillConfig:
    student, loss, augment, train_extra = STUDENTS[name]
    train = {"epochs": 5.0, "batch_size": 32, "eval_batch_size": 128, "learning_rate": 1e-4, "warmup": 0.06,
             "eval_strategy": "epoch", "logging_steps": 200, "seed": 42, **train_extra, **overrides}
    return DistillConfig(
        output_dir=str(WORK / name),
        teacher=str(teacher),
        cache_dir=str(WORK / "cache"),
        teacher_mode="online",
        student=student,
        loss=loss,
        augment=augment,
        data=DataSettings(),  # the teacher's data and splits
        train=TrainSettings(**train),
    )


def selection_accuracy_by_step(run_dir: Path) -> dict[int, float]:
    """Step -> accuracy on the selection split from the run's training log (the Trainer's evaluations)."""
    log = json.loads((Path(run_dir) / "training_log.json").read_text())
    return {entry["step"]: round(entry["eval_accuracy"], 4) for entry in log if "eval_accuracy" in entry}


def previous_results() -> dict:
    return json.loads((RESULTS / "distill.json").read_text()) if (RESULTS / "distill.json").is_file() else {}


def kept_rows(measured: list[dict], teacher_row: dict, previous: dict) -> list[dict]:
    """The students measured now, plus the previous results' rows of students not re-run (same teacher only),
    in STUDENTS order; each row carries the commit it was measured at and the teacher's latency in that run."""
    same_teacher = previous.get("teacher", {}).get("dev_accuracy") == teacher_row["dev_accuracy"]
    rows = {row["name"]: row for row in previous.get("students", []) if same_teacher}
    rows.update({row["name"]: row for row in measured})
    return [rows[name] for name in STUDENTS if name in rows]


def earlier_rows(previous: dict, teacher_row: dict) -> dict:
    """Rows of an earlier teacher, chosen on dev: kept apart so the change of method stays visible."""
    if previous.get("teacher", {}).get("dev_accuracy") == teacher_row["dev_accuracy"]:
        return previous.get("previous_students", {})
    if previous.get("students") and all(row.get("selected_on", "dev") == "dev" for row in previous["students"]):
        return {"teacher": previous["teacher"], "selected_on": "dev", "students": previous["students"]}
    return previous.get("previous_students", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=str(ROOT / "runs" / "sst2_minilm"))
    parser.add_argument("--students", default="layers3,layers2,narrow",
                        help="students to train, comma-separated, or none (only the online/cached ratio)")
    parser.add_argument("--epochs", type=float, default=None,
                        help="epochs of the layer students (default: their recipe's, 5 for layers3, 3 for layers2)")
    parser.add_argument("--narrow-epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak learning rate of the layer students (default: their recipe's)")
    parser.add_argument("--eval-steps", type=int, default=None,
                        help="evaluate the layer students every N steps instead of each epoch (best kept)")
    parser.add_argument("--augment-copies", type=int, default=None,
                        help="augment.copies of the layer students (default: their recipe's)")
    parser.add_argument("--augment-min-words", type=int, default=None,
                        help="augment.min_words of the layer students (default: their recipe's)")
    parser.add_argument("--ratio-steps", type=int, default=200, help="steps timed for the online/cached ratio")
    args = parser.parse_args()

    import torch

    from distill.stage import run_distill

    teacher = Path(args.teacher)
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    previous = previous_results()
    students, teacher_row = [], None
    for name in [] if args.students == "none" else args.students.split(","):
        if name == "narrow":  # the layer-student flags leave the narrow student's recipe alone
            config = config_for(name, teacher, epochs=args.narrow_epochs)
        else:
            flags = {"learning_rate": args.learning_rate, "epochs": args.epochs}
            if args.eval_steps:
                flags.update(eval_strategy="steps", eval_steps=args.eval_steps)
            config = config_for(name, teacher, **{key: value for key, value in flags.items() if value is not None})
            for key in ("copies", "min_words"):
                if getattr(args, f"augment_{key}") is not None:
                    setattr(config.augment, key, getattr(args, f"augment_{key}"))
        tracker = ReportedSetTracker(recorded_data(teacher))
        result = run_distill(config, overwrite=(WORK / name).exists(), callbacks=[tracker])
        m = result.metrics
        teacher_row = {"dev_accuracy": m["teacher"]["dev_accuracy"], "latency_b1_ms": m["teacher"]["latency_b1_ms"],
                       "latency_b32_ms": m["teacher"]["latency_b32_ms"], "parameters": m["teacher"]["parameters"]}
        students.append({
            "name": name, "layers": m["student"]["layers"], "layer_map": m["student"]["layer_map"],
            "hidden_size": m["student"]["hidden_size"],
            "dev_accuracy": m["student"]["dev_accuracy"], "selected_on": m["train"]["best_checkpoint_chosen_on"],
            "selection_accuracy": m["train"]["best_checkpoint_accuracy"],
            "dev_accuracy_if_selected_on_dev": tracker.figures()["dev_accuracy_if_selected_on_dev"],
            "retention": m["retention"], "agreement": m["agreement"],
            "speedup_b32": m["speedup_b32"], "speedup_b1": m["speedup_b1"],
            "latency_b32_ms": m["student"]["latency_b32_ms"],
            "teacher_latency_b32_ms": m["teacher"]["latency_b32_ms"], "parameters": m["student"]["parameters"],
            "size_mb": m["student"]["size_mb"], "epochs": config.train.epochs,
            "train_seconds": m["train"]["train_runtime"],
            "learning_rate": config.train.learning_rate,
            "augment_copies": config.augment.copies,
            "augment_min_words": config.augment.min_words,
            "eval_steps": config.train.eval_steps if config.train.eval_strategy == "steps" else None,
            "dev_accuracy_by_step": tracker.figures()["dev_accuracy_by_step"],
            "selection_accuracy_by_step": selection_accuracy_by_step(result.output),
            "wall_seconds": result.seconds, **git_state(),
        })
    if teacher_row is None:  # --students none: the recorded rows stay, with their teacher
        teacher_row = previous["teacher"]
    earlier = earlier_rows(previous, teacher_row)
    students = kept_rows(students, teacher_row, previous)

    # Same steps of the 3-layer student, teacher logits cached (already on disk) vs the teacher run online,
    # in the order cached, online, online, cached (a drift in the machine's speed falls on both alike).
    runs = {"cached": [], "online": []}
    for mode in ("cached", "online", "online", "cached"):
        config = config_for("layers3", teacher, epochs=1.0, max_steps=args.ratio_steps, eval_strategy="no")
        config.output_dir = str(WORK / f"ratio-{mode}")
        config.loss = LossSettings(temperature=2.0, soft_weight=0.5)  # logits only: the cache can stand in
        config.teacher_mode = mode
        metrics = run_distill(config, overwrite=(WORK / f"ratio-{mode}").exists()).metrics
        runs[mode].append(metrics["train"]["train_runtime"])
    timings = {mode: sum(seconds) / len(seconds) for mode, seconds in runs.items()}

    result = {
        "teacher": teacher_row,
        "students": students,
        "previous_students": earlier,
        "precomputed_vs_online_time_ratio": timings["online"] / timings["cached"],
        "ratio_train_seconds": timings,
        "ratio_train_seconds_each_run": runs,
        "setup": {
            "teacher": str(teacher.relative_to(ROOT)) if teacher.is_relative_to(ROOT) else str(teacher),
            "data": "SST-2 train (67,349) -> dev (872)",
            "losses": {name: vars(STUDENTS[name][1]) for name in STUDENTS},
            "augment_copies": {name: STUDENTS[name][2].copies for name in STUDENTS},
            "augment_min_words": {name: STUDENTS[name][2].min_words for name in STUDENTS},
            "learning_rates": {name: STUDENTS[name][3].get("learning_rate", 1e-4) for name in STUDENTS},
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
            "wall_seconds": time.perf_counter() - started,
            **provenance(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nteacher: dev accuracy {teacher_row['dev_accuracy']:.4f}, "
          f"{teacher_row['latency_b32_ms']:.1f} ms per batch of 32")
    print(f"{'student':<9} {'layers':>6} {'hidden':>6} {'dev acc':>8} {'retention':>9} {'agree':>6} {'speedup32':>9}")
    for s in students:
        print(f"{s['name']:<9} {s['layers']:>6} {s['hidden_size']:>6} {s['dev_accuracy']:>8.4f} "
              f"{s['retention']:>9.4f} {s['agreement']:>6.3f} {s['speedup_b32']:>8.2f}x")
    print(f"online / cached teacher time per step: {result['precomputed_vs_online_time_ratio']:.2f}x")
    print(f"wrote {RESULTS / 'distill.json'}")


if __name__ == "__main__":
    main()
