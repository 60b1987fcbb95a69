"""The explanation stage's config: which models and texts, and how to explain them."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.errors import UserError
from pipelines.windows import backend_stride

METHOD_NAMES = ("shap", "lime", "ig")


@dataclasses.dataclass
class ExplainSettings:
    """How to explain (the pipeline config's `explain` section)."""

    num_examples: int = dataclasses.field(default=12, metadata={"help": "How many texts to explain."})
    select: Literal["first", "random", "informative"] = dataclasses.field(
        default="informative",
        metadata={"help": "Which rows: the first N, N at random (seeded), or informative: a third each of the "
                          "most confident, least confident and misclassified predictions of the model."},
    )
    methods: list[str] = dataclasses.field(
        default_factory=lambda: ["ig"],
        metadata={"help": "Attribution methods: ig (integrated gradients, the default: on 200 human-annotated SST "
                          "sentences its words match the human rationales better than SHAP's (token AUPRC 0.645 "
                          "against 0.563), as faithful, in half SHAP's time), shap, lime; the first is shown in "
                          "the report's examples."})
    max_evals: int = dataclasses.field(default=300, metadata={"help": "Model evaluations per example (SHAP, LIME)."})
    batch_size: int = dataclasses.field(default=256, metadata={"help": "Texts per forward pass."})
    max_length: int | None = dataclasses.field(
        default=None, metadata={"help": "Tokens the model reads at once (its window); default: the model's own "
                                        "(from its data record), else 128."})
    long_texts: Literal["window", "truncate"] = dataclasses.field(
        default="window",
        metadata={"help": "Texts longer than max_length: window (default) predicts them over overlapping windows "
                          "(mean of the windows' probabilities) and explains them window by window, stitched onto "
                          "the whole text's words; truncate explains their first max_length tokens. Both are "
                          "counted in the metrics and the report."})
    stride: int | None = dataclasses.field(
        default=None, metadata={"help": "Tokens shared by consecutive windows (whole words, at most this many; "
                                        "default: a quarter of max_length)."})
    rationale_column: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Column of human rationales: one 0/1 per whitespace word of the text, or evidence spans "
                          "[[start, end], ...] in word offsets; plausibility (token AUPRC, top-k token F1, IOU F1) "
                          "is measured against them. An ERASER annotations file (--input-file) brings its own."})
    precision: Literal["auto", "fp32", "bf16"] = dataclasses.field(
        default="auto",
        metadata={"help": "Model arithmetic for explaining: bf16 autocast is ~3.7x faster on CPUs with native "
                          "bf16 (auto picks it there) and ranks tokens as fp32 does (Spearman 0.998 measured)."},
    )
    top_k: int = dataclasses.field(default=3, metadata={"help": "k of the top-k agreement."})
    seed: int = dataclasses.field(default=42, metadata={"help": "Seed for selection, LIME and the random baseline."})
    num_threads: int | None = dataclasses.field(default=None, metadata={"help": "torch CPU threads."})

    def __post_init__(self) -> None:
        for key in ("num_examples", "max_evals", "batch_size", "top_k"):
            if getattr(self, key) <= 0:
                raise UserError(f"{key} must be a positive number, got {getattr(self, key)}")
        if self.max_length is not None and self.max_length <= 0:
            raise UserError(f"max_length must be a positive number, got {self.max_length}")
        unknown = [m for m in self.methods if m not in METHOD_NAMES]
        if unknown or not self.methods:
            raise UserError(f"methods must be among {', '.join(METHOD_NAMES)}; got {', '.join(self.methods) or 'none'}")
        if self.max_evals < 10:
            raise UserError(f"max_evals must be at least 10, got {self.max_evals}")
        backend_stride(self.max_length or 128, self.stride, self.long_texts)  # checks them


@dataclasses.dataclass
class ExplainConfig(ExplainSettings):
    """Which classifier(s) to explain on which texts, how, and where the report goes."""

    output_dir: str = dataclasses.field(default="runs/explain", metadata={"help": "Folder for the report."})
    model: str = dataclasses.field(default="runs/sst2_minilm", metadata={"help": "Classifier folder to explain."})
    compare: str | None = dataclasses.field(
        default=None, metadata={"help": "A second classifier (e.g. the student) explained side by side."}
    )
    model_name: str | None = dataclasses.field(default=None, metadata={"help": "Name shown for the model."})
    compare_name: str | None = dataclasses.field(default=None, metadata={"help": "Name shown for --compare."})
    input_file: str | None = dataclasses.field(
        default=None, metadata={"help": "File with the texts to explain; default: the eval split the model was "
                                        "trained with (from its data record)."})
    texts: list[str] | None = dataclasses.field(default=None, metadata={"help": "Texts given directly."})
    text_column: str = dataclasses.field(default="text", metadata={"help": "Column with the text (input_file)."})
    text_pair_column: str | None = dataclasses.field(default=None, metadata={"help": "Second text column."})
    label_column: str | None = dataclasses.field(
        default="label", metadata={"help": "Gold labels, shown when the column exists."}
    )
