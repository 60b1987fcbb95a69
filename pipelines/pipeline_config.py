"""The end-to-end pipeline's config: one YAML with a section per stage, turned into each stage's own config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from distill.config import DistillConfig, DistillSettings, LossSettings, StudentSettings
from explain.config import ExplainConfig
from pipelines.config import DataSettings, FinetuneConfig, LoraSettings, ModelSettings, TrainSettings
from pipelines.errors import UserError
from pipelines.export import ExportSettings

STAGES = ("finetune", "distill", "export", "explain", "report")


@dataclasses.dataclass
class ExplainSettings:
    num_examples: int = dataclasses.field(default=12, metadata={"help": "Examples explained (a third each: most "
                                                                        "confident, least confident, misclassified)."})
    methods: list[str] = dataclasses.field(default_factory=lambda: ["shap"], metadata={"help": "shap, lime, ig."})
    max_evals: int = dataclasses.field(default=300, metadata={"help": "Model evaluations per example."})
    batch_size: int = dataclasses.field(default=256, metadata={"help": "Texts per forward pass."})


@dataclasses.dataclass
class PipelineConfig:
    run_dir: str = dataclasses.field(default="runs/pipeline", metadata={"help": "Folder holding every stage."})
    stages: list[str] = dataclasses.field(default_factory=lambda: list(STAGES),
                                          metadata={"help": "Stages to run, in order."})
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    lora: LoraSettings = dataclasses.field(default_factory=LoraSettings)
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)
    student: StudentSettings = dataclasses.field(default_factory=lambda: StudentSettings(layers=3))
    loss: LossSettings = dataclasses.field(default_factory=LossSettings)
    distill: DistillSettings = dataclasses.field(default_factory=DistillSettings)
    distill_train: TrainSettings = dataclasses.field(
        default_factory=lambda: TrainSettings(epochs=1.0, learning_rate=1e-4, eval_strategy="epoch")
    )
    export: ExportSettings = dataclasses.field(default_factory=ExportSettings)
    explain: ExplainSettings = dataclasses.field(default_factory=ExplainSettings)

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise UserError(f"stages must be among {', '.join(STAGES)}; got {', '.join(unknown)}")
        order = [STAGES.index(s) for s in self.stages]
        if order != sorted(order):
            raise UserError(f"stages must keep the order {' -> '.join(STAGES)}")

    def stage_dir(self, stage: str) -> Path:
        return Path(self.run_dir) / stage

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(output_dir=str(self.stage_dir("finetune")), model=self.model, data=self.data,
                              lora=self.lora, train=self.train)

    def distill_config(self) -> DistillConfig:
        student = dataclasses.replace(self.student, max_length=self.model.max_length) \
            if self.student.max_length == StudentSettings().max_length else self.student
        return DistillConfig(
            output_dir=str(self.stage_dir("distill")),
            distill=dataclasses.replace(self.distill, teacher=str(self.stage_dir("finetune"))),
            student=student, loss=self.loss, data=self.data, train=self.distill_train,
        )

    def export_models(self) -> dict[str, Path]:
        """The PyTorch folders the export stage ships: the teacher, and the student when there is one."""
        models = {"teacher": self.stage_dir("finetune")}
        if "distill" in self.stages or (self.stage_dir("distill") / "manifest.json").is_file():
            models["student"] = self.stage_dir("distill")
        return models

    def export_settings(self) -> ExportSettings:
        return dataclasses.replace(self.export, max_length=self.model.max_length,
                                   num_threads=self.export.num_threads or self.train.num_threads)

    def explain_config(self) -> ExplainConfig:
        has_student = "distill" in self.stages or (self.stage_dir("distill") / "manifest.json").is_file()
        return ExplainConfig(
            output_dir=str(self.stage_dir("explain")),
            model=str(self.stage_dir("finetune")),
            compare=str(self.stage_dir("distill")) if has_student else None,
            model_name="teacher",
            compare_name="student",
            input_file=self.data.eval_file or self.data.train_file,
            text_column=self.data.text_column,
            text_pair_column=self.data.text_pair_column,
            label_column=self.data.label_column,
            num_examples=self.explain.num_examples,
            select="informative",
            methods=self.explain.methods,
            max_evals=self.explain.max_evals,
            batch_size=self.explain.batch_size,
            max_length=self.model.max_length,
            seed=self.train.seed,
            num_threads=self.train.num_threads,
        )
