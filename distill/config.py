"""The distillation stage's config: teacher, student, losses, augmentation, data and training settings."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from pipelines.data import DataSettings
from pipelines.errors import UserError
from pipelines.training.settings import EXPERIMENTS, TrainSettings


@dataclasses.dataclass
class StudentSettings:
    layers: int | None = dataclasses.field(
        default=None,
        metadata={"help": "Keep this many of the teacher's layers, picked as student.choose_layers says."},
    )
    choose_layers: Literal["auto", "groups", "influence"] = dataclasses.field(
        default="auto",
        metadata={"help": "How student.layers picks them. groups: the last of each equal group; influence: the "
                          "layers that change their input most (block influence, measured on training rows); auto: "
                          "influence for causal-LM teachers, groups for classifiers (each as measured)."},
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
    max_length: int | None = dataclasses.field(
        default=None, metadata={"help": "Tokens kept per example by the student; default: the teacher's."})

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
    top_k: int = dataclasses.field(
        default=32, metadata={"help": "Causal LMs: the teacher's k most likely next tokens cached per position "
                                      "(log-probabilities); the soft loss is the KL over them."})

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise UserError(f"loss.temperature must be a positive number, got {self.temperature}")
        if not 0.0 <= self.soft_weight <= 1.0:
            raise UserError(f"loss.soft_weight must be between 0 and 1, got {self.soft_weight}")
        if self.hidden_weight < 0 or self.attention_weight < 0:
            raise UserError("loss.hidden_weight and loss.attention_weight must be >= 0")


@dataclasses.dataclass
class AugmentSettings:
    copies: int = dataclasses.field(
        default=0, metadata={"help": "Extra copies of each training text with words masked or dropped, labelled by "
                                     "the teacher alone (soft loss only)."}
    )
    prob: float = dataclasses.field(
        default=0.15, metadata={"help": "Share of words masked or dropped in an augmented copy."}
    )
    min_words: int = dataclasses.field(
        default=0, metadata={"help": "Only texts of at least this many words get augmented copies."}
    )

    def __post_init__(self) -> None:
        if self.copies < 0:
            raise UserError(f"augment.copies must be >= 0, got {self.copies}")
        if not 0.0 < self.prob < 1.0:
            raise UserError(f"augment.prob must be between 0 and 1, got {self.prob}")
        if self.min_words < 0:
            raise UserError(f"augment.min_words must be >= 0, got {self.min_words}")


def _distill_training() -> TrainSettings:
    return TrainSettings(epochs=1.0, learning_rate=1e-4, eval_strategy="epoch")


@dataclasses.dataclass
class DistillSettings:
    """How to distill (the pipeline config's `distill` section)."""

    teacher_mode: Literal["cached", "online"] = dataclasses.field(
        default="cached",
        metadata={"help": "cached: teacher logits computed once and stored; online: teacher run on every batch "
                          "(the hidden-state and attention losses always run it online)."},
    )
    student: StudentSettings = dataclasses.field(default_factory=StudentSettings)
    loss: LossSettings = dataclasses.field(default_factory=LossSettings)
    augment: AugmentSettings = dataclasses.field(default_factory=AugmentSettings)
    train: TrainSettings = dataclasses.field(default_factory=_distill_training)

    REMOVED_SETTINGS: ClassVar[dict[str, str]] = {
        "extra_teachers": "was removed: an ensemble teacher's student (0.9014 on SST-2) ended below a student of "
                          f"the single teacher (0.9071); {EXPERIMENTS}",
        "augment_copies": "has moved to augment.copies",
        "augment_prob": "has moved to augment.prob",
        "augment_min_words": "has moved to augment.min_words",
    }


@dataclasses.dataclass
class DistillConfig(DistillSettings):
    """Which teacher to distill, on what data, how, and where the student goes."""

    output_dir: str = dataclasses.field(default="runs/distill", metadata={"help": "Folder for the student."})
    teacher: str = dataclasses.field(default="runs/sst2_minilm", metadata={"help": "A fine-tuned model folder."})
    data: DataSettings = dataclasses.field(
        default_factory=DataSettings,
        metadata={"help": "Data to distill on; without data.train_file, the data the teacher was trained on."})
    cache_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Where teacher logits are cached (default: the output folder's cache/)."}
    )

    REMOVED_SETTINGS: ClassVar[dict[str, str]] = {
        **DistillSettings.REMOVED_SETTINGS,
        "distill": "has moved: distill.teacher is now teacher, distill.teacher_mode teacher_mode, distill.cache_dir "
                   "cache_dir, distill.augment_copies / augment_prob / augment_min_words augment.copies / prob / "
                   "min_words",
    }
