"""The export stage's config: which models, the parity set, and the gate."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.errors import UserError


@dataclasses.dataclass
class ExportSettings:
    """How to export and what the copies must match (the pipeline config's `export` section)."""

    quantize: Literal["int8", "none"] = dataclasses.field(
        default="int8", metadata={"help": "Also write an int8 copy (onnxruntime dynamic quantization), or not."})
    max_logit_diff: float = dataclasses.field(
        default=1e-4, metadata={"help": "Largest absolute logit difference allowed between fp32 ONNX and PyTorch."})
    max_accuracy_drop: float = dataclasses.field(
        default=0.005, metadata={"help": "Accuracy the int8 copy may lose against PyTorch on the parity set "
                                         "(0.005: half a point)."})
    min_agreement: float = dataclasses.field(
        default=0.97, metadata={"help": "Without gold labels: share of rows where int8 and PyTorch must agree."})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "Texts per batch on the parity set."})
    measure_latency: bool = dataclasses.field(
        default=True, metadata={"help": "Measure latency at batch 1 and 32 for every copy."})
    try_all_int8: bool = dataclasses.field(
        default=False, metadata={"help": "Measure every int8 recipe (for the record), still keeping the most "
                                         "quantized one that passes."})
    num_threads: int | None = dataclasses.field(default=None, metadata={"help": "CPU threads; default: all cores."})
    max_length: int | None = dataclasses.field(
        default=None, metadata={"help": "Tokens per text; default: the model's own (from its data record), else 128."})
    opset: int = dataclasses.field(default=17, metadata={"help": "ONNX opset."})

    def __post_init__(self) -> None:
        if not self.max_logit_diff > 0:
            raise UserError(f"export.max_logit_diff must be positive, got {self.max_logit_diff}")
        for key in ("max_accuracy_drop", "min_agreement"):
            if not 0 <= getattr(self, key) <= 1:
                raise UserError(f"export.{key} must be between 0 and 1, got {getattr(self, key)}")
        if self.batch_size < 1 or (self.num_threads is not None and self.num_threads < 1):
            raise UserError("export.batch_size and export.num_threads must be at least 1")


@dataclasses.dataclass
class ExportConfig(ExportSettings):
    """Which model folder(s) to export, checked on which parity set, and where the copies go."""

    output_dir: str = dataclasses.field(default="runs/export", metadata={"help": "Folder for the ONNX copies."})
    model: str = dataclasses.field(default="runs/sst2_minilm",
                                   metadata={"help": "A PyTorch classifier folder this project wrote."})
    compare: str | None = dataclasses.field(
        default=None, metadata={"help": "A second model (e.g. the student): each goes into its own subfolder, "
                                        "with deployment.json comparing every copy of both."})
    model_name: str = dataclasses.field(default="teacher", metadata={"help": "Subfolder of --model with --compare."})
    compare_name: str = dataclasses.field(default="student", metadata={"help": "Subfolder of --compare."})
    eval_file: str | None = dataclasses.field(
        default=None, metadata={"help": "Parity set; default: the eval split the model was trained with."})
    text_column: str = dataclasses.field(default="text", metadata={"help": "Text column of --eval-file."})
    text_pair_column: str | None = dataclasses.field(default=None, metadata={"help": "Second text column."})
    label_column: str | None = dataclasses.field(
        default="label", metadata={"help": "Gold labels of --eval-file (accuracy), when the column exists."})
    force: bool = dataclasses.field(default=False, metadata={"help": "Keep an export that fails the gate."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compare and self.model_name == self.compare_name:
            raise UserError(f"model_name and compare_name must differ, both are '{self.model_name}'")
