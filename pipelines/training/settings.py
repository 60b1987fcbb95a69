"""Training settings shared by every stage that trains (fine-tuning and distillation)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from pipelines.config import require_positive
from pipelines.errors import UserError

EXPERIMENTS = "see docs/experiments.md"


@dataclasses.dataclass
class TrainSettings:
    epochs: float = dataclasses.field(default=3.0, metadata={"help": "Training epochs."})
    max_steps: int = dataclasses.field(default=-1, metadata={"help": "Stop after this many steps (-1: use epochs)."})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "Training batch size per device."})
    eval_batch_size: int = dataclasses.field(default=128, metadata={"help": "Evaluation batch size."})
    learning_rate: float = dataclasses.field(default=5e-4, metadata={"help": "Peak learning rate."})
    weight_decay: float = dataclasses.field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup: float = dataclasses.field(
        default=0.06, metadata={"help": "Warm-up: a ratio of all steps if < 1, else a number of steps."}
    )
    lr_scheduler: str = dataclasses.field(default="linear", metadata={"help": "transformers scheduler name."})
    seed: int = dataclasses.field(default=42, metadata={"help": "Seed for data order, splits and init."})
    group_by_length: bool = dataclasses.field(
        default=True, metadata={"help": "Batch examples of similar length together (less padding), batches in "
                                        "shuffled order."}
    )
    eval_strategy: Literal["epoch", "steps", "no"] = dataclasses.field(
        default="epoch", metadata={"help": "When to evaluate and checkpoint (the best checkpoint is published)."}
    )
    eval_steps: int = dataclasses.field(default=500, metadata={"help": "Steps between evaluations (strategy steps)."})
    logging_steps: int = dataclasses.field(default=50, metadata={"help": "Steps between loss logs."})
    save_total_limit: int = dataclasses.field(default=2, metadata={"help": "Checkpoints kept (the best is kept)."})
    report_to: list[str] = dataclasses.field(
        default_factory=list, metadata={"help": "Loggers for transformers, e.g. [tensorboard]."}
    )
    num_threads: int | None = dataclasses.field(
        default=None, metadata={"help": "torch CPU threads; default: all cores."}
    )
    bf16: bool = dataclasses.field(
        default=False, metadata={"help": "bfloat16 autocast (CPUs with AVX512-BF16 or AMX, recent GPUs)."}
    )
    fast_dropout: bool = dataclasses.field(
        default=True,
        metadata={"help": "Draw CPU dropout masks with numpy's SFC64 (seeded from torch; same rates, about 20% "
                          "faster LoRA steps); false: torch's own dropout."},
    )
    label_smoothing: float = dataclasses.field(
        default=0.0,
        metadata={"help": "Label smoothing of the gold-label cross-entropy: this share of the target's weight goes "
                          "evenly to all labels; 0: one-hot targets."},
    )

    REMOVED_SETTINGS: ClassVar[dict[str, str]] = {
        "rdrop_alpha": "was removed: R-Drop ended level with the plain recipe on SST-2 (alpha 1: 0.9002, alpha 4: "
                       f"0.8991; the recipe: 0.9014 ± 0.0061 over 8 runs); {EXPERIMENTS}",
        "sam_rho": "was removed: sharpness-aware minimisation ended level with the recipe on SST-2 (0.9063, mean of "
                   f"3 seeds; the recipe 0.9014 ± 0.0061) at 1.8-1.9x the step cost; {EXPERIMENTS}",
        "sam_adaptive": f"was removed: adaptive SAM ended level with the recipe on SST-2 (0.9037); {EXPERIMENTS}",
        "dropout": "was removed: a dropout rate for the whole model ended level with the recipe on SST-2 (0.9025 at "
                   f"0); {EXPERIMENTS}",
        "layer_lr_decay": "was removed: layer-wise learning-rate decay ended level with the recipe on SST-2 (0.9025 "
                          f"at 0.8 and at 0.9); {EXPERIMENTS}",
        "weight_average_decay": "was removed: the moving average of the weights ended below the recipe's best "
                                f"checkpoint on SST-2 (0.9002); {EXPERIMENTS}",
    }

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise UserError(f"train.epochs must be a positive number, got {self.epochs}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"train.max_steps must be -1 (use epochs) or a positive integer, got {self.max_steps}")
        for key in ("batch_size", "eval_batch_size", "eval_steps", "logging_steps", "save_total_limit"):
            require_positive(f"train.{key}", getattr(self, key))
        if self.learning_rate <= 0:
            raise UserError(f"train.learning_rate must be a positive number, got {self.learning_rate}")
        if self.warmup < 0:
            raise UserError(f"train.warmup must be >= 0, got {self.warmup}")
        if self.num_threads is not None:
            require_positive("train.num_threads", self.num_threads)
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"train.label_smoothing must lie in [0, 1), got {self.label_smoothing}")
