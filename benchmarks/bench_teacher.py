"""The SST-2 teacher recipes: dev accuracy and wall time of LoRA and full fine-tuning of all-MiniLM-L6-v2.

    python benchmarks/bench_teacher.py            # trains both recipes (about an hour and a half on 2 cores)
    python benchmarks/bench_teacher.py --collect  # reads finished runs from their output folders

The teacher recipe is configs/sst2_minilm.yaml (full fine-tuning, 2 epochs, the best full run tried);
configs/sst2_minilm_3ep.yaml is the 3-epoch full run, configs/sst2_minilm_lora.yaml the best LoRA run.
Dev accuracy is on the 872 SST-2 dev sentences (the best checkpoint by dev accuracy is kept).
Prints a table and writes benchmarks/results/teacher_sst2_minilm.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config import FinetuneConfig, load_config  # noqa: E402

RECIPES = {"teacher": "sst2_minilm.yaml", "lora": "sst2_minilm_lora.yaml", "full_3_epochs": "sst2_minilm_3ep.yaml"}


def recipe_result(config_name: str, train: bool) -> dict:
    config = load_config(FinetuneConfig, ROOT / "configs" / config_name)
    output_dir = ROOT / config.output_dir
    if train and not (output_dir / "manifest.json").is_file():
        from pipelines.finetune import run_finetune

        config.output_dir = str(output_dir)
        run_finetune(config, overwrite=output_dir.exists())
    metrics = json.loads((output_dir / "metrics.json").read_text())
    manifest = json.loads((output_dir / "manifest.json").read_text())
    return {
        "config": f"configs/{config_name}",
        "method": config.lora.method,
        "dev_accuracy": metrics["eval"]["accuracy"],
        "dev_macro_f1": metrics["eval"]["macro_f1"],
        "wall_seconds": manifest["timings_seconds"]["total"],
        "train_seconds": metrics["train"]["train_runtime"],
        "steps": metrics["train"]["global_step"],
        "epochs": metrics["train"]["epochs"],
        "best_checkpoint_step": int(str(metrics["train"]["best_checkpoint"]).rsplit("-", 1)[-1])
        if metrics["train"]["best_checkpoint"] else None,
        "trained_parameters": metrics["parameters"]["trained"],
        "packages": manifest["packages"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", action="store_true", help="read finished runs instead of training")
    args = parser.parse_args()
    runs = {name: recipe_result(config, train=not args.collect) for name, config in RECIPES.items()}
    result = {
        "dev_accuracy": runs["teacher"]["dev_accuracy"],
        "wall_seconds": runs["teacher"]["wall_seconds"],
        "lora_dev_accuracy": runs["lora"]["dev_accuracy"],
        "full_dev_accuracy": max(runs["teacher"]["dev_accuracy"], runs["full_3_epochs"]["dev_accuracy"]),
        "runs": runs,
    }
    out = ROOT / "benchmarks" / "results" / "teacher_sst2_minilm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'recipe':<14} {'config':<32} {'dev acc':>8} {'macro-F1':>9} {'wall s':>8} {'steps':>6}")
    for name, run in runs.items():
        print(f"{name:<14} {run['config']:<32} {run['dev_accuracy']:>8.4f} {run['dev_macro_f1']:>9.4f} "
              f"{run['wall_seconds']:>8.0f} {run['steps']:>6}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
