"""Fine-tune a pretrained BERT- or GPT-style model into a text classifier (LoRA by default).

    python scripts/finetune.py --config configs/sst2_minilm.yaml [--epochs 1 --output-dir runs/x ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import override_parser, overrides_from  # noqa: E402
from pipelines.config import FinetuneConfig, load_config  # noqa: E402
from pipelines.errors import run_cli  # noqa: E402

# flag -> dotted config key
OVERRIDES = {
    "output_dir": "output_dir",
    "model": "model.name",
    "max_length": "model.max_length",
    "train_file": "data.train_file",
    "eval_file": "data.eval_file",
    "text_column": "data.text_column",
    "text_pair_column": "data.text_pair_column",
    "label_column": "data.label_column",
    "label_names": "data.label_names",
    "max_train_samples": "data.max_train_samples",
    "max_eval_samples": "data.max_eval_samples",
    "method": "lora.method",
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "lora_targets": "lora.target_modules",
    "lora_modules_to_save": "lora.modules_to_save",
    "loraplus_lr_ratio": "lora.loraplus_lr_ratio",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "seed": "train.seed",
    "report_to": "train.report_to",
    "num_threads": "train.num_threads",
    "bf16": "train.bf16",
    "fast_dropout": "train.fast_dropout",
    "dropout": "train.dropout",
    "rdrop_alpha": "train.rdrop_alpha",
    "sam_rho": "train.sam_rho",
    "sam_adaptive": "train.sam_adaptive",
    "label_smoothing": "train.label_smoothing",
    "adapt_epochs": "adapt.epochs",
    "adapt_learning_rate": "adapt.learning_rate",
    "layer_lr_decay": "train.layer_lr_decay",
    "weight_average_decay": "train.weight_average_decay",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = override_parser(__doc__, OVERRIDES)
    parser.add_argument("--drop-empty-texts", action="store_true", help="drop rows with empty texts (else refuse)")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--dora", action="store_true", help="DoRA adapters (weight magnitude learnt apart)")
    parser.add_argument("--rslora", action="store_true", help="rank-stabilised LoRA scaling (alpha / sqrt(r))")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --output-dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = overrides_from(args, OVERRIDES)
    if args.drop_empty_texts:
        overrides["data.empty_texts"] = "drop"
    if args.full:
        overrides["lora.method"] = "full"
    if args.dora:
        overrides["lora.use_dora"] = True
    if args.rslora:
        overrides["lora.use_rslora"] = True
    config = load_config(FinetuneConfig, args.config, overrides)

    from pipelines.finetune import run_finetune

    result = run_finetune(config, resume=args.resume, overwrite=args.overwrite)
    if result.metrics:
        evaluated = result.metrics["eval"]
        print(f"accuracy {evaluated['accuracy']:.4f}  macro-F1 {evaluated['macro_f1']:.4f}  "
              f"({result.wall_seconds:.0f} s)")
        print(f"model written to {result.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
