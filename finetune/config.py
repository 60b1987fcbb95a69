"""The fine-tuning stage's config: the model, LoRA and training settings, the data and the output folder."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from pipelines.config import require_positive
from pipelines.data import DataSettings
from pipelines.errors import UserError
from pipelines.models import ModelSettings
from pipelines.training.settings import EXPERIMENTS, TrainSettings


@dataclasses.dataclass
class LoraSettings:
    method: Literal["lora", "full"] = dataclasses.field(
        default="lora", metadata={"help": "lora: train low-rank adapters and the head; full: train every weight."}
    )
    r: int = dataclasses.field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = dataclasses.field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    dropout: float = dataclasses.field(default=0.1, metadata={"help": "Dropout on the LoRA path."})
    target_modules: list[str] | None = dataclasses.field(
        default=None, metadata={"help": "Module names to adapt; default: every linear layer of the architecture."}
    )
    modules_to_save: list[str] | None = dataclasses.field(
        default=None,
        metadata={"help": "Modules trained in full and saved beside the adapters, besides the classification "
                          "head, which always is; default: the pooler of a BERT-style model ([] for the head "
                          "alone)."},
    )
    use_dora: bool = dataclasses.field(
        default=False, metadata={"help": "DoRA: learn each weight's magnitude apart from its low-rank direction."}
    )
    use_rslora: bool = dataclasses.field(
        default=False, metadata={"help": "rsLoRA: scale adapters by alpha / sqrt(r) instead of alpha / r."}
    )
    loraplus_lr_ratio: float | None = dataclasses.field(
        default=None,
        metadata={"help": "LoRA+: the adapters' B matrices (and biases) learn this many times faster than A "
                          "(e.g. 16); off when unset."},
    )

    def __post_init__(self) -> None:
        require_positive("lora.r", self.r)
        require_positive("lora.alpha", self.alpha)
        if self.loraplus_lr_ratio is not None and self.loraplus_lr_ratio < 1:
            raise UserError(f"lora.loraplus_lr_ratio must be >= 1, got {self.loraplus_lr_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass
class FinetuneSettings:
    """How to fine-tune (the pipeline config's `finetune` section)."""

    task: Literal["classification", "causal-lm"] = dataclasses.field(
        default="classification",
        metadata={"help": "classification: a text classifier from labelled rows; causal-lm: a decoder fine-tuned on "
                          "prompt/response pairs (loss on the response tokens) or plain text."})
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    lora: LoraSettings = dataclasses.field(default_factory=LoraSettings)
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)
    generation_prompts: int = dataclasses.field(
        default=4, metadata={"help": "task causal-lm: eval prompts generated for before and after training."})
    max_new_tokens: int = dataclasses.field(
        default=64, metadata={"help": "task causal-lm: tokens generated per sample prompt."})

    REMOVED_SETTINGS: ClassVar[dict[str, str]] = {
        "adapt": f"was removed: task-adaptive pretraining ended below the recipe on SST-2 (0.8945); {EXPERIMENTS}",
    }


@dataclasses.dataclass
class FinetuneConfig(FinetuneSettings):
    """What to fine-tune on, how, and where the model goes."""

    output_dir: str = dataclasses.field(default="runs/finetune", metadata={"help": "Folder for the model."})
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
