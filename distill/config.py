"""The distillation stage's config: teacher, student, losses, data and training settings."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.config import DataSettings, TrainSettings
from pipelines.errors import UserError


@dataclasses.dataclass
class StudentSettings:
    layers: int | None = dataclasses.field(
        default=None,
        metadata={"help": "Keep this many of the teacher's layers: the last of each of this many equal groups "
                          "(6 -> 3: [1, 3, 5])."},
    )
    layer_map: list[int] | None = dataclasses.field(
        default=None, metadata={"help": "Exactly which teacher layers to keep, e.g. [0, 2, 5] (overrides layers)."}
    )
    model: str | None = dataclasses.field(
        default=None, metadata={"help": "A smaller pretrained model (preset, folder, hub id) with its own tokenizer."}
    )
    hidden_size: int | None = dataclasses.field(
        default=None, metadata={"help": "A fresh, narrow student of the teacher's architecture with this width."}
    )
    num_hidden_layers: int = dataclasses.field(default=4, metadata={"help": "Layers of a fresh student."})
    num_attention_heads: int | None = dataclasses.field(
        default=None, metadata={"help": "Attention heads of a fresh student (default: keep the teacher's head width)."}
    )
    intermediate_size: int | None = dataclasses.field(
        default=None, metadata={"help": "Feed-forward width of a fresh student (default 4 x hidden_size)."}
    )
    init: Literal["prune", "pca"] = dataclasses.field(
        default="prune",
        metadata={"help": "How a fresh student starts. prune: from evenly spaced teacher layers, keeping their most "
                          "active hidden channels, heads and feed-forward neurons (BERT-style teachers); pca: "
                          "embeddings reduced from the teacher's by PCA, blocks random."},
    )
    max_length: int = dataclasses.field(default=128, metadata={"help": "Tokens kept per example (student)."})

    def kind(self) -> str:
        chosen = [name for name, value in (("layers", self.layers or self.layer_map), ("model", self.model),
                                           ("fresh", self.hidden_size)) if value]
        if len(chosen) != 1:
            raise UserError("choose one student: student.layers (or layer_map), student.model, or student.hidden_size")
        return chosen[0]


@dataclasses.dataclass
class LossSettings:
    temperature: float = dataclasses.field(default=2.0, metadata={"help": "Softmax temperature T of the soft loss."})
    soft_weight: float = dataclasses.field(
        default=0.5, metadata={"help": "Weight of the soft (teacher) loss; 1 - it goes to the gold labels."}
    )
    hidden_weight: float = dataclasses.field(
        default=0.0, metadata={"help": "Weight of the hidden-state MSE (needs the online teacher, same tokenizer)."}
    )
    attention_weight: float = dataclasses.field(
        default=0.0, metadata={"help": "Weight of the attention-map MSE (same head count; online teacher)."}
    )

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise UserError(f"loss.temperature must be a positive number, got {self.temperature}")
        if not 0.0 <= self.soft_weight <= 1.0:
            raise UserError(f"loss.soft_weight must be between 0 and 1, got {self.soft_weight}")
        if self.hidden_weight < 0 or self.attention_weight < 0:
            raise UserError("loss.hidden_weight and loss.attention_weight must be >= 0")


@dataclasses.dataclass
class DistillSettings:
    teacher: str = dataclasses.field(default="runs/sst2_minilm", metadata={"help": "A fine-tuned model folder."})
    extra_teachers: list[str] = dataclasses.field(
        default_factory=list,
        metadata={"help": "More fine-tuned model folders with the teacher's labels: the student learns the mean of "
                          "all teachers' softened probabilities (an ensemble teacher; cached logits only)."},
    )
    teacher_mode: Literal["cached", "online"] = dataclasses.field(
        default="cached",
        metadata={"help": "cached: teacher logits computed once and stored; online: teacher run on every batch."},
    )
    augment_copies: int = dataclasses.field(
        default=0, metadata={"help": "Extra copies of each training text with words masked or dropped."}
    )
    augment_prob: float = dataclasses.field(
        default=0.15, metadata={"help": "Share of words masked or dropped in an augmented copy."}
    )
    augment_min_words: int = dataclasses.field(
        default=0, metadata={"help": "Only texts of at least this many words get augmented copies."}
    )
    cache_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Where teacher logits are cached (default: the run folder's cache/)."}
    )

    def __post_init__(self) -> None:
        if self.augment_copies < 0:
            raise UserError(f"distill.augment_copies must be >= 0, got {self.augment_copies}")
        if not 0.0 < self.augment_prob < 1.0:
            raise UserError(f"distill.augment_prob must be between 0 and 1, got {self.augment_prob}")
        if self.augment_min_words < 0:
            raise UserError(f"distill.augment_min_words must be >= 0, got {self.augment_min_words}")


@dataclasses.dataclass
class DistillConfig:
    output_dir: str = dataclasses.field(default="runs/distill", metadata={"help": "Folder for the student."})
    distill: DistillSettings = dataclasses.field(default_factory=DistillSettings)
    student: StudentSettings = dataclasses.field(default_factory=StudentSettings)
    loss: LossSettings = dataclasses.field(default_factory=LossSettings)
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    train: TrainSettings = dataclasses.field(
        default_factory=lambda: TrainSettings(epochs=1.0, learning_rate=1e-4, eval_strategy="epoch")
    )

    def __post_init__(self) -> None:
        for key in ("rdrop_alpha", "sam_rho", "dropout", "label_smoothing"):
            if getattr(self.train, key):
                raise UserError(f"train.{key} applies to fine-tuning only; distillation does not use it")
