"""Config loading: unknown keys get the nearest valid key, wrong types and values name the key."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.config import FinetuneConfig, load_config
from pipelines.errors import UserError


def load(tmp_path, text: str, overrides=None) -> FinetuneConfig:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(FinetuneConfig, path, overrides)


def test_yaml_and_overrides(tmp_path):
    config = load(tmp_path, "train:\n  epochs: 2\n  learning_rate: 1e-4\nlora:\n  r: 4\n",
                  {"train.batch_size": "8", "lora.r": None, "data.label_names": "neg,pos"})
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


def test_bad_override_is_refused(tmp_path):
    with pytest.raises(UserError, match="train.epochs must be a number"):
        load(tmp_path, "", {"train.epochs": "lots"})


def test_every_setting_has_help():
    from pipelines import config as config_module

    for cls in (config_module.ModelSettings, config_module.DataSettings, config_module.LoraSettings,
                config_module.TrainSettings):
        for field in dataclasses.fields(cls):
            assert field.metadata.get("help"), f"{cls.__name__}.{field.name} has no help text"


def test_shipped_configs_load():
    from pathlib import Path

    from distill.config import DistillConfig
    from pipelines.pipeline_config import PipelineConfig

    kinds = {"default.yaml": PipelineConfig, "smoke.yaml": PipelineConfig}
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        load_config(kinds.get(path.name, DistillConfig if path.name.startswith("distill") else FinetuneConfig), path)
