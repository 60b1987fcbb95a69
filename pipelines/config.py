"""Typed configs: dataclasses loaded from YAML, checked key by key, with dotted CLI overrides."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipelines.errors import UserError


@dataclasses.dataclass
class ModelSettings:
    name: str = dataclasses.field(
        default="minilm",
        metadata={"help": "Preset (minilm, smollm2), a local Hugging Face folder, or a hub id when online."},
    )
    max_length: int = dataclasses.field(default=128, metadata={"help": "Tokens kept per example."})
    trust_remote_code: bool = dataclasses.field(
        default=False, metadata={"help": "Run code shipped with a hub model. Off unless you trust it."}
    )

    def __post_init__(self) -> None:
        _require_positive("model.max_length", self.max_length)


@dataclasses.dataclass
class DataSettings:
    train_file: str = dataclasses.field(default="data/sst2/train.tsv", metadata={"help": "Training file."})
    eval_file: str | None = dataclasses.field(
        default=None, metadata={"help": "Evaluation file; without it a stratified split of train is held out."}
    )
    text_column: str = dataclasses.field(default="text", metadata={"help": "Column with the text."})
    text_pair_column: str | None = dataclasses.field(
        default=None, metadata={"help": "Second text column for sentence-pair tasks."}
    )
    label_column: str = dataclasses.field(default="label", metadata={"help": "Column with the labels."})
    label_names: list[str] | None = dataclasses.field(
        default=None,
        metadata={"help": "Names for integer labels 0..n-1, in order (e.g. [negative, positive])."},
    )
    validation_split: float = dataclasses.field(
        default=0.1, metadata={"help": "Share of train held out for evaluation when there is no eval file."}
    )
    empty_texts: Literal["error", "drop"] = dataclasses.field(
        default="error", metadata={"help": "Rows with empty or missing texts: refuse the file, or drop them."}
    )
    max_train_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep only the first N training rows (after shuffling with the seed)."}
    )
    max_eval_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep only the first N evaluation rows."}
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_split < 1.0:
            raise UserError(f"data.validation_split must be between 0 and 1, got {self.validation_split}")
        for key in ("max_train_samples", "max_eval_samples"):
            if getattr(self, key) is not None:
                _require_positive(f"data.{key}", getattr(self, key))


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
        _require_positive("lora.r", self.r)
        _require_positive("lora.alpha", self.alpha)
        if self.loraplus_lr_ratio is not None and self.loraplus_lr_ratio < 1:
            raise UserError(f"lora.loraplus_lr_ratio must be >= 1, got {self.loraplus_lr_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"lora.dropout must be in [0, 1), got {self.dropout}")


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
        default=True, metadata={"help": "Batch examples of similar length together (less padding)."}
    )
    eval_strategy: Literal["epoch", "steps", "no"] = dataclasses.field(
        default="epoch", metadata={"help": "When to evaluate and checkpoint."}
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
    dropout: float | None = dataclasses.field(
        default=None,
        metadata={"help": "Rate of every dropout in the model being trained (LoRA's own: lora.dropout); unset: the "
                          "model's own. The saved model keeps its own rates."},
    )
    rdrop_alpha: float = dataclasses.field(
        default=0.0,
        metadata={"help": "R-Drop: each batch trains twice under two dropout masks and the loss adds this weight "
                          "times the two predictions' symmetric KL divergence (steps cost up to 2x); 0: off."},
    )
    sam_rho: float = dataclasses.field(
        default=0.0,
        metadata={"help": "Sharpness-aware minimisation: each step takes its gradient again with the weights moved "
                          "this far (L2) up the first gradient, and updates with that (steps cost 2x); 0: off."},
    )
    sam_adaptive: bool = dataclasses.field(
        default=False,
        metadata={"help": "Adaptive SAM (ASAM): the move scaled by each weight's size (|w| + 0.01), sam_rho its "
                          "length in those units (typically about ten times SAM's rho)."},
    )
    label_smoothing: float = dataclasses.field(
        default=0.0,
        metadata={"help": "Label smoothing: the loss's target puts this share of its weight evenly on all labels "
                          "(transformers' label_smoothing_factor); 0: one-hot targets."},
    )
    layer_lr_decay: float = dataclasses.field(
        default=1.0,
        metadata={"help": "Layer-wise learning-rate decay: each layer learns at this factor of the rate of the "
                          "layer above it (head and pooler at the full rate, embeddings lowest); 1: one rate."},
    )
    weight_average_decay: float = dataclasses.field(
        default=0.0,
        metadata={"help": "Evaluate and publish an exponential moving average of the weights with this decay "
                          "(e.g. 0.999: about the last 1,000 steps); 0: the live weights."},
    )

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise UserError(f"train.epochs must be a positive number, got {self.epochs}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"train.max_steps must be -1 (use epochs) or a positive integer, got {self.max_steps}")
        for key in ("batch_size", "eval_batch_size", "eval_steps", "logging_steps", "save_total_limit"):
            _require_positive(f"train.{key}", getattr(self, key))
        if self.learning_rate <= 0:
            raise UserError(f"train.learning_rate must be a positive number, got {self.learning_rate}")
        if self.warmup < 0:
            raise UserError(f"train.warmup must be >= 0, got {self.warmup}")
        if self.num_threads is not None:
            _require_positive("train.num_threads", self.num_threads)
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise UserError(f"train.dropout must lie in [0, 1), got {self.dropout}")
        if self.rdrop_alpha < 0:
            raise UserError(f"train.rdrop_alpha must be >= 0, got {self.rdrop_alpha}")
        if self.sam_rho < 0:
            raise UserError(f"train.sam_rho must be >= 0, got {self.sam_rho}")
        if self.sam_adaptive and not self.sam_rho:
            raise UserError("train.sam_adaptive needs train.sam_rho > 0 (the size of the adaptive move)")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"train.label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.rdrop_alpha:
            raise UserError("train.label_smoothing and train.rdrop_alpha cannot be combined (R-Drop computes its own "
                            "loss); set one of them to 0")
        if not 0 < self.layer_lr_decay <= 1:
            raise UserError(f"train.layer_lr_decay must lie in (0, 1], got {self.layer_lr_decay}")
        if not 0 <= self.weight_average_decay < 1:
            raise UserError(f"train.weight_average_decay must lie in [0, 1), got {self.weight_average_decay}")


@dataclasses.dataclass
class AdaptSettings:
    epochs: float = dataclasses.field(
        default=0.0,
        metadata={"help": "Task-adaptive pretraining before fine-tuning: epochs of masked-word (BERT-style) or "
                          "next-token (GPT-style) training on the training texts; 0: off."},
    )
    learning_rate: float = dataclasses.field(default=1e-4, metadata={"help": "Its peak learning rate."})
    mask_probability: float = dataclasses.field(
        default=0.15, metadata={"help": "Share of tokens masked (BERT-style models)."}
    )
    save_steps: int = dataclasses.field(default=500, metadata={"help": "Steps between its checkpoints."})

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise UserError(f"adapt.epochs must be >= 0, got {self.epochs}")
        if self.learning_rate <= 0:
            raise UserError(f"adapt.learning_rate must be a positive number, got {self.learning_rate}")
        if not 0 < self.mask_probability < 1:
            raise UserError(f"adapt.mask_probability must lie in (0, 1), got {self.mask_probability}")
        _require_positive("adapt.save_steps", self.save_steps)


@dataclasses.dataclass
class FinetuneConfig:
    output_dir: str = dataclasses.field(default="runs/finetune", metadata={"help": "Folder for the model."})
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    lora: LoraSettings = dataclasses.field(default_factory=LoraSettings)
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)
    adapt: AdaptSettings = dataclasses.field(default_factory=AdaptSettings)

    def __post_init__(self) -> None:
        no_lora_dropout = self.lora.method == "full" or self.lora.dropout == 0
        if self.train.rdrop_alpha and self.train.dropout == 0 and no_lora_dropout:
            raise UserError("train.rdrop_alpha needs dropout: with train.dropout 0 (and no LoRA dropout) both passes "
                            "agree and R-Drop only costs time")
        if self.lora.method == "lora" and self.lora.loraplus_lr_ratio is not None and self.train.layer_lr_decay < 1:
            raise UserError("lora.loraplus_lr_ratio and train.layer_lr_decay each set their own learning rates; "
                            "use one of them")


def _require_positive(key: str, value: int | float) -> None:
    if value <= 0:
        raise UserError(f"{key} must be a positive number, got {value}")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}.get(
        tp, str(tp)
    )


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return value as type tp, or raise UserError naming the key, the value and what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except UserError:
                continue
        raise UserError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be {_type_name(tp)}, got {value!r}")
        (item_type,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UserError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"{key} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key} must be a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp} for {key}")


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for field in dataclasses.fields(cls):
        hints = typing.get_type_hints(cls)
        name = prefix + field.name
        keys.append(name)
        if _is_dataclass_type(hints[field.name]):
            keys.extend(_valid_keys(hints[field.name], name + "."))
    return keys


def build(cls: type, values: dict[str, Any], prefix: str = "", source: str = "config") -> Any:
    """Build dataclass cls from a nested dict; unknown keys and bad values raise UserError."""
    if not isinstance(values, dict):
        raise UserError(f"{prefix.rstrip('.') or 'the config'} in {source} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = prefix + str(key)
        if key not in names:
            candidates = _valid_keys(cls, prefix)
            near = difflib.get_close_matches(full, candidates, n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(sorted(candidates))}"
            raise UserError(f"unknown key '{full}' in {source}{hint}")
        if _is_dataclass_type(hints[key]):
            kwargs[key] = build(hints[key], value or {}, full + ".", source)
        else:
            kwargs[key] = _coerce(full, value, hints[key])
    return cls(**kwargs)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set tree['a']['b'] = value for dotted 'a.b', creating the mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def load_config(cls: type, path: str | Path | None, overrides: dict[str, Any] | None = None) -> Any:
    """Read YAML at path (if any), apply dotted overrides (values that are None are skipped), build cls."""
    tree: dict[str, Any] = {}
    source = "the command line"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UserError(f"config file {path} is not valid YAML{where}") from err
        if not isinstance(tree, dict):
            raise UserError(f"config file {path} must hold a mapping of settings, not {type(tree).__name__}")
        source = str(path)
    build(cls, tree, source=source)  # check the file alone first, so errors name it
    if not any(v is not None for v in (overrides or {}).values()):
        return build(cls, tree, source=source)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(tree, dotted, value)
    return build(cls, tree, source=f"{source} with command-line overrides")


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
