"""The prediction stage's config: which model, which file in and out, and how to batch."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.errors import UserError
from pipelines.windows import backend_stride


@dataclasses.dataclass
class PredictConfig:
    model: str = dataclasses.field(
        default="runs/default/distill",
        metadata={"help": "A model folder this project wrote: teacher, student, LoRA adapter or ONNX export."})
    input_file: str | None = dataclasses.field(
        default=None, metadata={"help": "File to label (csv, tsv, jsonl, json, parquet or a datasets folder)."})
    output_file: str | None = dataclasses.field(
        default=None, metadata={"help": "Where the labelled rows go (.csv, .tsv, .jsonl or .parquet)."})
    text_column: str = dataclasses.field(default="text", metadata={"help": "Column with the text."})
    text_pair_column: str | None = dataclasses.field(default=None, metadata={"help": "Second text column."})
    label_column: str | None = dataclasses.field(
        default=None, metadata={"help": "Gold labels in the input, if any: the accuracy is reported."})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "Texts per batch."})
    top_k: int = dataclasses.field(default=1, metadata={"help": "Also write the k best labels and their scores."})
    max_length: int = dataclasses.field(
        default=128, metadata={"help": "Tokens the model reads at once (its window); longer texts: see long_texts."})
    long_texts: Literal["window", "truncate"] = dataclasses.field(
        default="window",
        metadata={"help": "Texts longer than max_length: window (default) reads them over overlapping windows and "
                          "averages the windows' probabilities; truncate keeps the first max_length tokens. Both "
                          "are counted and logged."})
    stride: int | None = dataclasses.field(
        default=None, metadata={"help": "Tokens shared by consecutive windows (whole words, at most this many; "
                                        "default: a quarter of max_length)."})
    num_threads: int | None = dataclasses.field(default=None, metadata={"help": "CPU threads; default: all cores."})
    variant: Literal["auto", "fp32", "int8"] = dataclasses.field(
        default="auto", metadata={"help": "ONNX folders: the copy to use (auto: int8 when present)."})
    precision: Literal["auto", "fp32", "bf16"] = dataclasses.field(
        default="auto", metadata={"help": "PyTorch folders: bf16 autocast (auto: where the CPU runs bf16 natively)."})
    progress: bool = dataclasses.field(default=True, metadata={"help": "Show a rows-per-second progress bar."})
    max_new_tokens: int = dataclasses.field(
        default=64, metadata={"help": "Causal language models: tokens generated per prompt (greedy); the text "
                                      "column holds the prompts and the output gets a `generated` column."})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.top_k < 1 or self.max_new_tokens < 1:
            raise UserError("batch_size, top_k and max_new_tokens must be at least 1")
        backend_stride(self.max_length, self.stride, self.long_texts)  # checks them

    def window_stride(self) -> int | None:
        """The backend's stride: None when long texts are truncated."""
        return backend_stride(self.max_length, self.stride, self.long_texts)
