"""The pipeline runner: a table of stages; skips unchanged ones, re-runs changed ones and those after them,
resumes after a kill; stages find what earlier ones decided in their folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from chain.config import STAGE_NAMES, PipelineConfig
from chain.runner import STAGES, run_pipeline
from pipelines.config import dump_yaml, load_config
from pipelines.errors import UserError
from tests.conftest import ROOT, ResumeProbe, logits_of, tiny_pipeline, with_stage_callbacks


def test_the_table_holds_every_stage_in_order_and_each_config_builds():
    assert tuple(spec.name for spec in STAGES) == STAGE_NAMES
    config = load_config(PipelineConfig, ROOT / "configs" / "default.yaml")
    for spec in STAGES:
        stage_config = spec.config(config)
        assert stage_config.output_dir == str(config.stage_dir(spec.name))
    assert [spec.name for spec in STAGES if spec.resumable] == ["finetune", "distill"]
    distill = config.distill_config()
    assert distill.teacher == str(config.stage_dir("finetune")) and distill.data.train_file is None
    export = config.export_config()
    assert (export.model, export.compare) == (str(config.stage_dir("finetune")), str(config.stage_dir("distill")))


def statuses(result) -> dict[str, str]:
    return {stage: info["status"] for stage, info in result.stages.items()}


def test_skip_when_unchanged_rerun_on_change_and_from(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    config = tiny_pipeline(tiny_bert, train, evaluation, tmp_path / "run")
    first = run_pipeline(config)
    assert statuses(first) == dict.fromkeys(("finetune", "distill", "export", "explain", "report"), "ran")
    assert first.report == tmp_path / "run" / "report" / "report.html" and first.report.is_file()
    for stage in ("finetune", "distill", "export", "explain", "report"):
        manifest = json.loads((tmp_path / "run" / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["packages"]["torch"] and "timings_seconds" in manifest

    assert set(statuses(run_pipeline(config)).values()) == {"skipped"}

    config.distill.train.learning_rate = 2e-3  # a distillation setting: fine-tuning stays
    assert statuses(run_pipeline(config)) == {"finetune": "skipped", "distill": "ran", "export": "ran",
                                              "explain": "ran", "report": "ran"}
    assert statuses(run_pipeline(config, from_stage="explain")) == {
        "finetune": "skipped", "distill": "skipped", "export": "skipped", "explain": "ran", "report": "ran"}
    deployment = json.loads((tmp_path / "run" / "export" / "deployment.json").read_text())
    assert {(r["model"], r["format"]) for r in deployment["rows"]} == {
        (m, f) for m in ("teacher", "student") for f in ("pytorch", "onnx_fp32", "onnx_int8")}
    assert next(r for r in deployment["rows"] if r["model"] == "teacher" and r["format"] == "pytorch")[
        "agreement_with_teacher"] == 1.0
    assert 'id="deployment"' in first.report.read_text()

    evaluation.write_text(evaluation.read_text() + "the plot was superb,pos\n")  # new data: everything re-runs
    assert set(statuses(run_pipeline(config)).values()) == {"ran"}


def test_refusals(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    config = tiny_pipeline(tiny_bert, train, evaluation, tmp_path / "run")
    with pytest.raises(UserError, match="not one of this run's stages"):
        config.stages = ["finetune", "distill"]
        run_pipeline(config, from_stage="explain")
    with pytest.raises(UserError, match="keep the order"):
        PipelineConfig(stages=["distill", "finetune"])
    config.data.train_file = str(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="does not exist"):
        run_pipeline(config)


def test_resume_after_kill_continues_from_the_checkpoint(tiny_bert, sentiment_files, tmp_path, monkeypatch):
    train, evaluation = sentiment_files
    straight = tiny_pipeline(tiny_bert, train, evaluation, tmp_path / "straight")
    straight.stages = ["finetune"]
    run_pipeline(straight)

    config = tiny_pipeline(tiny_bert, train, evaluation, tmp_path / "killed")
    config.stages = ["finetune"]
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(dump_yaml(config))
    process = subprocess.Popen([sys.executable, str(ROOT / "tests/drivers/pipeline_kill.py"), str(config_file),
                                "finetune", "4"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               cwd=ROOT)
    try:
        for line in process.stdout:
            if "KILL-POINT" in line:
                process.kill()  # SIGKILL, right after the step-4 checkpoint was saved
                break
    finally:
        process.kill()
        process.wait(timeout=60)
    folder = tmp_path / "killed" / "finetune"
    assert (folder / "checkpoints" / "checkpoint-4").is_dir() and not (folder / "manifest.json").exists()

    checkpoint = shutil.copytree(folder / "checkpoints" / "checkpoint-4", tmp_path / "checkpoint-4")
    probe = ResumeProbe()
    with_stage_callbacks(monkeypatch, "finetune", [probe])
    result = run_pipeline(config)  # the same command again
    assert statuses(result) == {"finetune": "ran"}
    probe.assert_resumed_from(checkpoint)
    assert probe.steps == 4  # the 4 steps after the checkpoint, not all 8 again
    log = json.loads((folder / "training_log.json").read_text())
    assert [e["step"] for e in log if "loss" in e][:2] == [2, 4]  # history from before the kill was kept
    texts = ["the film was superb", "boring and sad"]
    np.testing.assert_allclose(logits_of(folder, texts), logits_of(tmp_path / "straight" / "finetune", texts),
                               atol=1e-4)
