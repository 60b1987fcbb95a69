"""Config loading: unknown keys get the nearest valid key, removed ones their reason, wrong types and values
name the key; every setting of every config declares its help; the shipped presets load as what they say."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from chain.config import PipelineConfig, ReportConfig
from distill.config import DistillConfig
from explain.config import ExplainConfig
from export.config import ExportConfig
from finetune.config import FinetuneConfig
from pipelines.config import dump_yaml, load_config, removed_settings, section_type, valid_keys
from pipelines.errors import UserError
from predict.config import PredictConfig
from tests.conftest import ROOT

CONFIGS = (FinetuneConfig, DistillConfig, ExplainConfig, ExportConfig, PredictConfig, PipelineConfig, ReportConfig)


def load(tmp_path, text: str, cls=FinetuneConfig):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(cls, path)


def test_yaml_values_are_typed(tmp_path):
    config = load(tmp_path, "train:\n  epochs: 2\n  learning_rate: 1e-4\n  batch_size: '8'\nlora:\n  r: 4\n"
                            "data:\n  label_names: neg,pos\n")
    assert config.train.epochs == 2.0 and config.train.learning_rate == 1e-4
    assert config.train.batch_size == 8 and config.lora.r == 4
    assert config.data.label_names == ["neg", "pos"]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("train:\n  epoch: 3\n", ["unknown key 'train.epoch'", "did you mean 'train.epochs'"]),
        ("trian:\n  epochs: 3\n", ["unknown key 'trian'", "did you mean 'train'"]),
        ("train:\n  epochs: many\n", ["train.epochs must be a number", "'many'"]),
        ("train:\n  learning_rate: -1\n", ["train.learning_rate must be a positive number"]),
        ("train:\n  learning_rate: 0\n", ["train.learning_rate must be a positive number"]),
        ("train:\n  batch_size: 0\n", ["train.batch_size must be a positive number"]),
        ("lora:\n  method: qlora\n", ["lora.method must be one of lora, full", "'qlora'"]),
        ("data:\n  empty_texts: skip\n", ["data.empty_texts must be one of error, drop"]),
        ("train:\n  group_by_length: maybe\n", ["train.group_by_length must be true or false"]),
        ("train: [1, 2]\n", ["train", "must be a mapping"]),
        ("- a\n- b\n", ["must hold a mapping"]),
        ("train:\n  epochs: [\n", ["not valid YAML", "line"]),
    ],
)
def test_bad_configs_are_refused_by_name(tmp_path, text, fragments):
    with pytest.raises(UserError) as caught:
        load(tmp_path, text)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def removed_cases():
    for cls in CONFIGS:
        for key, reason in removed_settings(cls).items():
            yield pytest.param(cls, key, reason, id=f"{cls.__name__}:{key}")


@pytest.mark.parametrize("cls, key, reason", list(removed_cases()))
def test_a_removed_or_moved_setting_is_refused_with_its_reason(tmp_path, cls, key, reason):
    *parents, leaf = key.split(".")
    text = "".join(f"{'  ' * depth}{part}:\n" for depth, part in enumerate(parents))
    text += f"{'  ' * len(parents)}{leaf}: 1\n"
    with pytest.raises(UserError) as caught:
        load(tmp_path, text, cls)
    message = str(caught.value)
    assert message.startswith(f"setting '{key}' in ") and message.endswith(reason)
    assert "unknown key" not in message
    assert reason.startswith(("was removed: ", "has moved"))


def test_the_removed_training_options_name_their_records():
    removed = removed_settings(FinetuneConfig)
    for key in ("train.rdrop_alpha", "train.sam_rho", "train.sam_adaptive", "train.dropout", "train.layer_lr_decay",
                "train.weight_average_decay", "adapt"):
        assert removed[key].startswith("was removed: ") and "docs/experiments.md" in removed[key], key
    assert "extra_teachers" in removed_settings(DistillConfig)
    assert (ROOT / "docs" / "experiments.md").is_file()


def config_classes(cls, seen=None) -> set[type]:
    seen = set() if seen is None else seen
    seen.add(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        section = section_type(hints[field.name])
        if section is not None and section not in seen:
            config_classes(section, seen)
    return seen


def test_every_setting_has_help():
    classes = set().union(*(config_classes(cls) for cls in CONFIGS))
    for cls in classes:
        for field in dataclasses.fields(cls):
            if section_type(typing.get_type_hints(cls)[field.name]) is None:
                assert len(field.metadata.get("help", "")) > 5, f"{cls.__name__}.{field.name} has no help text"


@pytest.mark.parametrize("name, cls", [
    ("default", PipelineConfig), ("smoke", PipelineConfig), ("sst2_minilm", FinetuneConfig),
    ("sst2_minilm_lora", FinetuneConfig), ("sst2_smollm2", FinetuneConfig), ("distill_sst2", DistillConfig),
    ("distill_sst2_layers2", DistillConfig), ("distill_sst2_narrow", DistillConfig),
    ("alpaca_smollm2", PipelineConfig),
])
def test_each_preset_loads_as_what_it_is_and_round_trips(tmp_path, name, cls):
    config = load_config(cls, ROOT / "configs" / f"{name}.yaml")
    assert load(tmp_path, dump_yaml(config), cls) == config  # what the YAML says is all there is
    if cls is PipelineConfig and config.task == "causal-lm":
        assert config.stages == ["finetune", "distill", "explain", "report"]
        assert (ROOT / config.data.train_file).is_file()
        assert config.finetune_config().task == "causal-lm"
    elif cls is PipelineConfig:
        assert config.stages == ["finetune", "distill", "export", "explain", "report"]
        assert config.data.train_file == "data/sst2/train.tsv" and config.data.text_column == "sentence"
        assert config.distill.student.kind() == "layers"
    elif cls is DistillConfig:
        assert config.teacher == "runs/sst2_minilm" and config.data.train_file is None  # the teacher's data
        assert config.loss.hidden_weight > 0 and config.teacher_mode == "online"
    else:
        assert (ROOT / config.data.train_file).is_file() and config.output_dir.startswith("runs/")
        assert (ROOT / config.data.eval_file).is_file() and config.task == "classification"
    assert len(list((ROOT / "configs").glob("*.yaml"))) <= 10  # presets a user starts from, not experiments


def test_valid_keys_follow_the_sections():
    keys = valid_keys(PipelineConfig)
    assert "finetune.train.learning_rate" in keys and "distill.loss.temperature" in keys
    assert "train.learning_rate" not in keys
