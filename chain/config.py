"""The pipeline's config: one YAML with the shared data, a section per stage, and the run folder.

Each section is the stage's own settings class; `PipelineConfig.<stage>_config()` adds what the chain decides
(the stage's folder inside the run folder, the model folders of earlier stages) to make that stage's config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

from distill.config import DistillConfig, DistillSettings, StudentSettings
from explain.config import ExplainConfig, ExplainSettings
from export.config import ExportConfig, ExportSettings
from finetune.config import FinetuneConfig, FinetuneSettings
from pipelines.artifacts import MANIFEST
from pipelines.cli import RunFlags
from pipelines.data import DataSettings
from pipelines.errors import UserError

STAGE_NAMES = ("finetune", "distill", "export", "explain", "report")
CAUSAL_LM_STAGES = {"finetune", "distill", "explain", "report"}


def _default_distill() -> DistillSettings:
    return DistillSettings(student=StudentSettings(layers=3))


def extend(section: Any, config_class: type, **chosen: Any) -> Any:
    """A stage config of config_class from a section of the pipeline config plus what the chain chose."""
    values = {field.name: getattr(section, field.name) for field in dataclasses.fields(section)}
    return config_class(**{**values, **chosen})


@dataclasses.dataclass
class PipelineFlags(RunFlags):
    from_stage: Literal["finetune", "distill", "export", "explain", "report"] | None = dataclasses.field(
        default=None, metadata={"help": "Run this stage and the ones after it even if their inputs are unchanged."})


@dataclasses.dataclass
class ReportConfig:
    run_dir: str = dataclasses.field(default="runs/pipeline", metadata={"help": "Run folder to report on."})
    output_dir: str = dataclasses.field(default="runs/pipeline/report", metadata={"help": "Folder for report.html."})
    title: str = dataclasses.field(default="pipeline", metadata={"help": "Title of the report."})


@dataclasses.dataclass
class PipelineConfig:
    output_dir: str = dataclasses.field(default="runs/pipeline", metadata={"help": "Run folder holding every stage."})
    stages: list[str] = dataclasses.field(default_factory=lambda: list(STAGE_NAMES),
                                          metadata={"help": "Stages to run, in order."})
    task: Literal["classification", "causal-lm"] = dataclasses.field(
        default="classification",
        metadata={"help": "classification, or causal-lm: a decoder on prompt/response pairs (stages finetune, "
                          "distill, explain and report)."})
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    finetune: FinetuneSettings = dataclasses.field(default_factory=FinetuneSettings)
    distill: DistillSettings = dataclasses.field(default_factory=_default_distill)
    export: ExportSettings = dataclasses.field(default_factory=ExportSettings)
    explain: ExplainSettings = dataclasses.field(default_factory=ExplainSettings)

    REMOVED_SETTINGS: ClassVar[dict[str, str]] = {
        "run_dir": "has moved to output_dir",
        "model": "has moved to finetune.model",
        "lora": "has moved to finetune.lora",
        "train": "has moved to finetune.train",
        "student": "has moved to distill.student",
        "loss": "has moved to distill.loss",
        "distill_train": "has moved to distill.train",
    }

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGE_NAMES]
        if unknown:
            raise UserError(f"stages must be among {', '.join(STAGE_NAMES)}; got {', '.join(unknown)}")
        if self.finetune.task != "classification" and self.finetune.task != self.task:
            raise UserError(f"finetune.task is {self.finetune.task} but the pipeline's task is {self.task}; set the "
                            "task once, at the top level (task: causal-lm)")
        if self.task == "causal-lm" and set(self.stages) - CAUSAL_LM_STAGES:
            raise UserError(f"task causal-lm runs the stages {', '.join(sorted(CAUSAL_LM_STAGES))}; "
                            f"{', '.join(s for s in self.stages if s not in CAUSAL_LM_STAGES)} work on classifiers")
        order = [STAGE_NAMES.index(s) for s in self.stages]
        if order != sorted(order):
            raise UserError(f"stages must keep the order {' -> '.join(STAGE_NAMES)}")

    def stage_dir(self, stage: str) -> Path:
        return Path(self.output_dir) / stage

    def has_student(self) -> bool:
        """Whether this run has a student: its distill stage runs, or a finished one is in the run folder."""
        return "distill" in self.stages or (self.stage_dir("distill") / MANIFEST).is_file()

    def finetune_config(self) -> FinetuneConfig:
        return extend(self.finetune, FinetuneConfig, output_dir=str(self.stage_dir("finetune")), data=self.data,
                      task=self.task)

    def distill_config(self) -> DistillConfig:
        """The student learns on the data the teacher recorded (its split), as no data section is given."""
        return extend(self.distill, DistillConfig, output_dir=str(self.stage_dir("distill")),
                      teacher=str(self.stage_dir("finetune")), data=DataSettings())

    def export_config(self) -> ExportConfig:
        return extend(self.export, ExportConfig, output_dir=str(self.stage_dir("export")),
                      model=str(self.stage_dir("finetune")),
                      compare=str(self.stage_dir("distill")) if self.has_student() else None,
                      num_threads=self.export.num_threads or self.finetune.train.num_threads)

    def explain_config(self) -> ExplainConfig:
        return extend(self.explain, ExplainConfig, output_dir=str(self.stage_dir("explain")),
                      model=str(self.stage_dir("finetune")),
                      compare=str(self.stage_dir("distill")) if self.has_student() else None,
                      model_name="teacher", compare_name="student",
                      num_threads=self.explain.num_threads or self.finetune.train.num_threads)

    def report_config(self) -> ReportConfig:
        return ReportConfig(run_dir=self.output_dir, output_dir=str(self.stage_dir("report")),
                            title=Path(self.output_dir).name)
