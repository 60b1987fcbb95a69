"""The SST-2 teacher recipes: dev accuracy and wall time of LoRA and full fine-tuning of all-MiniLM-L6-v2.

    python benchmarks/bench_teacher.py            # trains the recipes not yet in their folders (hours on 2 cores)
    python benchmarks/bench_teacher.py --recipes teacher   # trains (or re-reads) only these
    python benchmarks/bench_teacher.py --collect  # reads finished runs from their output folders; recipes
                                                  # whose folder is gone keep their row from the results file

The teacher recipe is configs/sst2_minilm.yaml (full fine-tuning, 2 epochs); configs/sst2_minilm_lora.yaml is
LoRA with the pooler trained in full. The other recipes are in benchmarks/recipes/; those of options that were
removed from the product (RECORDS) keep their recorded rows and are not trained again (their code is at commit
fc65f96). teacher_seed1 ... 5 are the teacher recipe with seeds 1-5, and recipe_spread sums up every run of the
teacher recipe's config: how far seeds and code versions move it. Dev accuracy is on the 872 SST-2 dev sentences
The teacher recipe chooses its checkpoint on rows held out of the training file (data.selection_split) and
scores dev once: dev_accuracy; the dev accuracy of every evaluation is tracked beside it, so the row also shows
what choosing on dev would have reported (dev_accuracy_if_selected_on_dev). Rows marked selected_on "dev" were
trained when checkpoints were chosen on dev, the set reported: their figure is that optimistic one. Each run also
gets the mean of its dev evaluations in the second half of its steps (second_half_mean). What each run showed:
docs/experiments.md. Prints a table and writes benchmarks/results/teacher_sst2_minilm.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from benchmarks.common import ReportedSetTracker, provenance  # noqa: E402
from distill.config import DistillConfig  # noqa: E402
from finetune.config import FinetuneConfig  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.data import prepare_data  # noqa: E402


class Recipe(NamedTuple):
    config: str  # path from the repository root
    output_dir: str | None = None  # when not the config's own
    seed: int | None = None  # when not the config's own


TEACHER = "configs/sst2_minilm.yaml"
RECIPE_DIR = "benchmarks/recipes"
SEEDS = (1, 2, 3, 4, 5)
RECIPES = {
    "teacher": Recipe(TEACHER),
    "lora": Recipe(f"{RECIPE_DIR}/sst2_minilm_lora_head.yaml"),
    "full_3_epochs": Recipe(f"{RECIPE_DIR}/sst2_minilm_3ep.yaml"),
    "teacher_rerun": Recipe(TEACHER, "runs/sst2_minilm_rerun"),
    "lora_dora": Recipe(f"{RECIPE_DIR}/sst2_minilm_lora_dora.yaml"),
    "lora_plus": Recipe(f"{RECIPE_DIR}/sst2_minilm_loraplus.yaml"),
    "lora_plus_lr5e4": Recipe(f"{RECIPE_DIR}/sst2_minilm_loraplus_lr5e4.yaml"),
    "lora_pooler": Recipe("configs/sst2_minilm_lora.yaml"),
    "teacher_fast_dropout": Recipe(TEACHER, "runs/sst2_minilm_fastdrop"),
    "teacher_ema": Recipe(f"{RECIPE_DIR}/sst2_minilm_ema.yaml"),
    "teacher_llrd": Recipe(f"{RECIPE_DIR}/sst2_minilm_llrd.yaml"),
    "teacher_llrd09": Recipe(f"{RECIPE_DIR}/sst2_minilm_llrd09.yaml"),
    "teacher_born_again": Recipe(f"{RECIPE_DIR}/distill_sst2_born_again.yaml"),
    "teacher_lr1e4": Recipe(f"{RECIPE_DIR}/sst2_minilm_lr1e4.yaml"),
    "teacher_dropout0": Recipe(f"{RECIPE_DIR}/sst2_minilm_dropout0.yaml"),
    "teacher_bs64_ep4": Recipe(f"{RECIPE_DIR}/sst2_minilm_bs64_ep4.yaml"),
    "teacher_rdrop": Recipe(f"{RECIPE_DIR}/sst2_minilm_rdrop.yaml"),
    "teacher_rdrop4": Recipe(f"{RECIPE_DIR}/sst2_minilm_rdrop4.yaml"),
    "teacher_adapt": Recipe(f"{RECIPE_DIR}/sst2_minilm_adapt.yaml"),
    "teacher_sam": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam.yaml"),
    "teacher_sam_seed1": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam.yaml", "runs/sst2_minilm_sam_seed1", 1),
    "teacher_sam_seed2": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam.yaml", "runs/sst2_minilm_sam_seed2", 2),
    "teacher_sam01": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam01.yaml"),
    "teacher_sam01_seed1": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam01.yaml", "runs/sst2_minilm_sam01_seed1", 1),
    "teacher_asam": Recipe(f"{RECIPE_DIR}/sst2_minilm_asam.yaml"),
    "teacher_sam003": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam003.yaml"),
    "teacher_label_smoothing": Recipe(f"{RECIPE_DIR}/sst2_minilm_ls.yaml"),
    "teacher_sam_label_smoothing": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam_ls.yaml"),
    "teacher_sam_label_smoothing_seed1": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam_ls.yaml",
                                                "runs/sst2_minilm_sam_ls_seed1", 1),
    "teacher_sam_bs16": Recipe(f"{RECIPE_DIR}/sst2_minilm_sam_bs16.yaml"),
    **{f"teacher_seed{seed}": Recipe(TEACHER, f"runs/sst2_minilm_seed{seed}", seed) for seed in SEEDS},
    "teacher_ensemble_distilled": Recipe(f"{RECIPE_DIR}/distill_sst2_ensemble.yaml"),
}
# Recipes of options removed from the product (docs/experiments.md): their rows are records, not re-trained.
RECORDS = {"teacher_ema", "teacher_llrd", "teacher_llrd09", "teacher_dropout0", "teacher_rdrop", "teacher_rdrop4",
           "teacher_adapt", "teacher_sam", "teacher_sam_seed1", "teacher_sam_seed2", "teacher_sam01",
           "teacher_sam01_seed1", "teacher_asam", "teacher_sam003", "teacher_sam_label_smoothing",
           "teacher_sam_label_smoothing_seed1", "teacher_sam_bs16", "teacher_ensemble_distilled"}
# Recipes that distil the teacher into a model of its own size (a DistillConfig, read from distill_metrics.json).
SELF_DISTILLED = {"teacher_born_again", "teacher_ensemble_distilled"}
# Rows whose run was resumed in a later process: their manifests time only the resumed part, so no wall time
# for the whole run is recorded.
RESUMED = {"lora", "teacher_sam_label_smoothing_seed1"}
NOTES = "What each run showed, with the commit that measured it: docs/experiments.md."
TRACKED = "dev_tracked.json"  # written by this script beside a run that chose its checkpoint off dev


def dev_accuracy_by_step(output_dir: Path) -> dict[int, float]:
    log = json.loads((output_dir / "training_log.json").read_text())
    return {entry["step"]: round(entry["eval_accuracy"], 4) for entry in log if "eval_accuracy" in entry}


def second_half_mean(run: dict) -> float:
    """Mean dev accuracy of the evaluations after half of the run's steps."""
    late = [accuracy for step, accuracy in run["dev_accuracy_by_step"].items() if int(step) > run["steps"] / 2]
    return round(statistics.mean(late), 4)


def run_provenance(output_dir: Path, manifest: dict) -> dict:
    return {"output_dir": str(output_dir.relative_to(ROOT)), "git_commit": manifest.get("git_commit"),
            "packages": manifest["packages"]}


def self_distilled_result(name: str, train: bool) -> dict:
    config_name = RECIPES[name].config
    config = load_config(DistillConfig, ROOT / config_name)
    output_dir = ROOT / config.output_dir
    if train and not (output_dir / "manifest.json").is_file():
        from distill.stage import run_distill

        run_distill(config, overwrite=output_dir.exists())
    metrics = json.loads((output_dir / "distill_metrics.json").read_text())
    manifest = json.loads((output_dir / "manifest.json").read_text())
    evaluations = dev_accuracy_by_step(output_dir)
    return {
        "config": config_name,
        "method": "self_distilled",
        "dev_accuracy": metrics["student"]["dev_accuracy"],
        "dev_macro_f1": metrics["student"]["dev_macro_f1"],
        "teacher_dev_accuracy": metrics["teacher"]["dev_accuracy"],
        "agreement_with_teacher": metrics["agreement"],
        "wall_seconds": manifest["timings_seconds"]["total"],
        "train_seconds": metrics["train"]["train_runtime"],
        "steps": metrics["train"]["global_step"],
        "epochs": config.train.epochs,
        "best_checkpoint_step": max(evaluations, key=lambda step: (evaluations[step], -step)),
        "trained_parameters": metrics["student"]["parameters"],
        "dev_accuracy_by_step": evaluations,
        **run_provenance(output_dir, manifest),
    }


def recipe_result(name: str, train: bool) -> dict:
    if name in SELF_DISTILLED:
        return self_distilled_result(name, train)
    config_name, output_override, seed = RECIPES[name]
    config = load_config(FinetuneConfig, ROOT / config_name)
    output_dir = ROOT / (output_override or config.output_dir)
    if seed is not None:
        config.train.seed = seed
    tracked = output_dir / TRACKED
    if train and not (output_dir / "manifest.json").is_file():
        from finetune.stage import run_finetune

        config.output_dir = str(output_dir)
        tracker = ReportedSetTracker(prepare_data(config.data, seed=config.train.seed), config.model.max_length)
        run_finetune(config, overwrite=output_dir.exists(),
                     callbacks=[tracker] if config.data.selection_split else None)
        if config.data.selection_split:
            tracked.write_text(json.dumps(tracker.figures(), indent=2) + "\n")
    metrics = json.loads((output_dir / "metrics.json").read_text())
    manifest = json.loads((output_dir / "manifest.json").read_text())
    chosen_on = {"selected_on": "dev"}
    if tracked.is_file():  # checkpoint chosen on the selection split, dev tracked beside it
        figures = json.loads(tracked.read_text())
        chosen_on = {"selected_on": "selection split", "selection_examples": metrics["data"]["selection_examples"],
                     "dev_accuracy_if_selected_on_dev": figures["dev_accuracy_if_selected_on_dev"],
                     "dev_accuracy_by_step": {int(k): v for k, v in figures["dev_accuracy_by_step"].items()},
                     "selection_accuracy_by_step": dev_accuracy_by_step(output_dir)}
    return {
        "config": config_name,
        "method": config.lora.method,
        "dev_accuracy": metrics["eval"]["accuracy"],
        "dev_macro_f1": metrics["eval"]["macro_f1"],
        "wall_seconds": None if name in RESUMED else manifest["timings_seconds"]["total"],
        "train_seconds": None if name in RESUMED else metrics["train"]["train_runtime"],
        "steps": metrics["train"]["global_step"],
        "epochs": metrics["train"]["epochs"],
        "seed": yaml.safe_load((output_dir / "config.yaml").read_text())["train"]["seed"],
        "best_checkpoint_step": int(str(metrics["train"]["best_checkpoint"]).rsplit("-", 1)[-1])
        if metrics["train"]["best_checkpoint"] else None,
        "trained_parameters": metrics["parameters"]["trained"],
        "dev_accuracy_by_step": dev_accuracy_by_step(output_dir),
        **chosen_on,
        **run_provenance(output_dir, manifest),
    }


def previous_runs(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text())["runs"] if path.is_file() else {}


def finished(name: str) -> bool:
    if name in RECORDS:
        return False
    config_name, output_override, _ = RECIPES[name]
    config_class = DistillConfig if name in SELF_DISTILLED else FinetuneConfig
    output_dir = ROOT / (output_override or load_config(config_class, ROOT / config_name).output_dir)
    return (output_dir / "manifest.json").is_file()


def recipe_spread(runs: dict[str, dict]) -> dict:
    """Dev accuracy of every run of the teacher recipe's config that chose its checkpoint on dev (seeds, code
    versions): how far it moves."""
    recipe = RECIPES["teacher"].config
    accuracies = {name: run["dev_accuracy"] for name, run in runs.items()
                  if run["config"] == recipe and run["selected_on"] == "dev"}
    values = list(accuracies.values())
    return {"selected_on": "dev", "runs": accuracies, "mean": statistics.mean(values),
            "stdev": statistics.stdev(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", action="store_true", help="read finished runs instead of training")
    parser.add_argument("--recipes", help="comma-separated recipe names to train or re-read (default: all)")
    args = parser.parse_args()
    chosen = set(args.recipes.split(",")) if args.recipes else set(RECIPES)
    out = ROOT / "benchmarks" / "results" / "teacher_sst2_minilm.json"
    recorded = previous_runs(out)
    for name, run in recorded.items():
        if name in RECIPES:  # the recipe files moved: each row names where its config is now
            run["config"] = RECIPES[name].config
        run.setdefault("selected_on", "dev")  # rows from before selection splits chose their checkpoint on dev
        if name in RESUMED:  # their wall time was the resumed part plus a figure typed in by hand: not measured
            run["wall_seconds"] = run["train_seconds"] = None
    previous_teacher = recorded.get("teacher")
    missing = [name for name in RECIPES if name not in recorded and not finished(name)
               and (args.collect or name in RECORDS or name not in chosen)]
    for name in missing:
        print(f"{name}: no finished run in its folder and no recorded row; left out (train it first)")
    keep = {name for name in recorded
            if name in RECORDS or name not in chosen or (args.collect and not finished(name))}
    runs = {name: recorded[name] if name in keep else recipe_result(name, train=not args.collect)
            for name in RECIPES if name not in missing}
    if previous_teacher and previous_teacher.get("git_commit") != runs["teacher"].get("git_commit") and \
            previous_teacher["selected_on"] == "dev":  # the recipe's earlier run, chosen on dev, stays beside it
        runs["teacher_selected_on_dev"] = previous_teacher
    elif "teacher_selected_on_dev" in recorded:
        runs["teacher_selected_on_dev"] = recorded["teacher_selected_on_dev"]
    for run in runs.values():
        run["second_half_mean"] = second_half_mean(run)
    result = {
        "dev_accuracy": runs["teacher"]["dev_accuracy"],
        "wall_seconds": runs["teacher"]["wall_seconds"],
        "selected_on": runs["teacher"]["selected_on"],
        "dev_accuracy_if_selected_on_dev": runs["teacher"].get("dev_accuracy_if_selected_on_dev"),
        "recipe_spread": recipe_spread(runs),
        "runs": runs,
        "notes": NOTES,
        "setup": provenance(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, runs))
    print(f"{'recipe':<{width}} {'config':<46} {'chosen on':<15} {'dev acc':>8} {'if on dev':>9} {'2nd half':>9} "
          f"{'wall s':>8} {'steps':>6}")
    for name, run in runs.items():
        on_dev = run.get("dev_accuracy_if_selected_on_dev")
        wall = run["wall_seconds"]
        print(f"{name:<{width}} {run['config']:<46} {run['selected_on']:<15} {run['dev_accuracy']:>8.4f} "
              f"{'' if on_dev is None else f'{on_dev:.4f}':>9} {run['second_half_mean']:>9.4f} "
              f"{'' if wall is None else f'{wall:.0f}':>8} {run['steps']:>6}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
