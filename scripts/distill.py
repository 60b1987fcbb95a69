r"""Distill a fine-tuned teacher folder into a smaller, faster student.

    python scripts/distill.py --teacher runs/sst2_minilm --student-layers 3 --output-dir runs/student3 \
        --train-file data/sst2/train.tsv --eval-file data/sst2/dev.tsv --text-column sentence
    python scripts/distill.py --config configs/distill_sst2.yaml [flags override the YAML]
    python scripts/distill.py --config configs/distill_sst2_born_again.yaml \
        --extra-teachers runs/sst2_minilm_seed1,runs/sst2_minilm_seed2   # an ensemble teacher
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import override_parser, overrides_from  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.errors import run_cli  # noqa: E402

OVERRIDES = {
    "output_dir": "output_dir",
    "teacher": "distill.teacher",
    "teacher_mode": "distill.teacher_mode",
    "extra_teachers": "distill.extra_teachers",
    "augment_copies": "distill.augment_copies",
    "augment_min_words": "distill.augment_min_words",
    "student_layers": "student.layers",
    "layer_map": "student.layer_map",
    "student": "student.model",
    "student_hidden_size": "student.hidden_size",
    "student_num_layers": "student.num_hidden_layers",
    "student_init": "student.init",
    "temperature": "loss.temperature",
    "soft_weight": "loss.soft_weight",
    "hidden_weight": "loss.hidden_weight",
    "train_file": "data.train_file",
    "eval_file": "data.eval_file",
    "text_column": "data.text_column",
    "text_pair_column": "data.text_pair_column",
    "label_column": "data.label_column",
    "max_train_samples": "data.max_train_samples",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "seed": "train.seed",
    "num_threads": "train.num_threads",
    "fast_dropout": "train.fast_dropout",
    "layer_lr_decay": "train.layer_lr_decay",
    "weight_average_decay": "train.weight_average_decay",
}


def main(argv: list[str] | None = None) -> int:
    parser = override_parser(__doc__, OVERRIDES)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --output-dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from distill.config import DistillConfig

    config = load_config(DistillConfig, args.config, overrides_from(args, OVERRIDES))
    from distill.stage import run_distill

    result = run_distill(config, resume=args.resume, overwrite=args.overwrite)
    if result.metrics:
        m = result.metrics
        print(f"student accuracy {m['student']['dev_accuracy']:.4f} (teacher {m['teacher']['dev_accuracy']:.4f}), "
              f"retention {m['retention']:.4f}, agreement {m['agreement']:.4f}, speed-up {m['speedup_b32']:.2f}x "
              f"at batch 32")
        print(f"student written to {result.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
