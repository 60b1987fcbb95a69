"""Flags generated from the config dataclasses: every setting has a flag with its help and default, the YAML's
values are the defaults the flags override, an unknown flag gets the nearest valid one, a removed one its reason."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest

from distill.config import DistillConfig
from finetune.config import FinetuneConfig
from pipelines.cli import RunFlags, TrainingRunFlags, parse, run_cli
from pipelines.config import section_type, valid_keys
from pipelines.errors import UserError
from tests.conftest import ROOT


def leaf_flags(cls, prefix: str = "") -> list[str]:
    flags = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        section = section_type(hints[field.name])
        if section is not None:
            flags += leaf_flags(section, prefix + field.name + ".")
        else:
            flags.append("--" + (prefix + field.name).replace("_", "-"))
    return flags


def test_flags_override_the_yaml_and_types_follow_the_fields(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: runs/a\ntrain:\n  epochs: 2\n  learning_rate: 1.0e-4\nlora:\n  r: 4\n")
    flags, config = parse(FinetuneConfig, ["--config", str(path), "--train.batch-size", "8", "--lora.use-dora",
                                           "--data.label-names", "neg", "pos", "--resume"], "doc", TrainingRunFlags)
    assert flags.resume and not flags.overwrite and flags.config == str(path)
    assert config.train.epochs == 2.0 and config.train.learning_rate == 1e-4 and config.lora.r == 4  # the YAML's
    assert config.train.batch_size == 8 and config.lora.use_dora and config.data.label_names == ["neg", "pos"]
    assert config.output_dir == "runs/a"


def test_a_bad_flag_value_is_refused_by_the_config_check():
    with pytest.raises(UserError, match="train.learning_rate must be a positive number"):
        parse(FinetuneConfig, ["--train.learning-rate", "-1"], "doc")


def test_a_removed_flag_is_refused_with_its_reason_before_parsing():
    for argv in (["--train.sam-rho", "0.05"], ["--sam-rho=0.05"], ["--rdrop-alpha", "1"]):
        with pytest.raises(UserError, match="was removed: .*docs/experiments.md"):
            parse(FinetuneConfig, argv, "doc")
    with pytest.raises(UserError, match="--extra-teachers: setting 'extra_teachers' was removed"):
        parse(DistillConfig, ["--extra-teachers", "a"], "doc")


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@pytest.mark.parametrize("name, cls, flags_class", [("finetune.py", FinetuneConfig, TrainingRunFlags),
                                                    ("distill.py", DistillConfig, TrainingRunFlags)])
def test_help_lists_every_setting_with_its_help_and_default(name, cls, flags_class):
    done = script(name, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.replace("│", " ").split())
    for flag in leaf_flags(cls) + leaf_flags(flags_class):
        assert flag in text, flag
    assert "Peak learning rate." in text and "Show tracebacks." in text
    assert len(valid_keys(cls)) > 20


def test_help_shows_the_yaml_values_as_defaults():
    done = script("finetune.py", "--config", "configs/sst2_minilm.yaml", "--help")
    text = " ".join(done.stdout.replace("│", " ").split())
    assert "(default: 5e-05)" in text and "(default: runs/sst2_minilm)" in text


def test_an_unknown_flag_gets_the_nearest_valid_one():
    done = script("finetune.py", "--train.epoch", "3")
    assert done.returncode == 2
    assert "--train.epochs" in done.stdout + done.stderr


def test_run_cli_reports_a_user_error_in_one_line(capsys):
    def main(argv):
        raise UserError("data/x.csv: line 3 is broken\nsecond line")

    assert run_cli(main, []) == 2
    assert capsys.readouterr().err == "error: data/x.csv: line 3 is broken second line\n"
    assert RunFlags().config is None
