"""The pipeline runner: skips unchanged stages, re-runs changed ones and those after them, resumes after a kill."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from test_finetune import logits_of

from distill.config import DistillSettings, StudentSettings
from explain.config import ExplainConfig  # noqa: F401  (the pipeline builds one)
from pipelines.config import DataSettings, LoraSettings, ModelSettings, TrainSettings, dump_yaml
from pipelines.errors import UserError
from pipelines.export import ExportSettings
from pipelines.pipeline_config import ExplainSettings, PipelineConfig
from pipelines.runner import run_pipeline, stage_settings


def tiny_pipeline(model, train, evaluation, run_dir) -> PipelineConfig:
    return PipelineConfig(
        run_dir=str(run_dir),
        data=DataSettings(train_file=str(train), eval_file=str(evaluation)),
        model=ModelSettings(name=str(model), max_length=32),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        train=TrainSettings(max_steps=8, batch_size=8, eval_batch_size=16, learning_rate=5e-3, warmup=0,
                            eval_strategy="steps", eval_steps=4, logging_steps=2, num_threads=1),
        student=StudentSettings(layers=1),
        distill_train=TrainSettings(max_steps=6, batch_size=8, learning_rate=1e-3, warmup=0, eval_strategy="steps",
                                    eval_steps=3, logging_steps=2, num_threads=1),
        explain=ExplainSettings(num_examples=3, max_evals=40, batch_size=64),
        export=ExportSettings(max_accuracy_drop=1.0, num_threads=1),  # random tiny models: int8 may flip labels
    )


def test_distill_stage_key_follows_extra_teachers_weights(tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "config.json").write_text("{}")
    (extra / "model.safetensors").write_bytes(b"first weights")
    config = PipelineConfig(run_dir=str(tmp_path / "run"), distill=DistillSettings(extra_teachers=[str(extra)]))
    before = stage_settings(config, "distill")
    (extra / "model.safetensors").write_bytes(b"retrained weights")
    assert stage_settings(config, "distill") != before
    # without extra teachers no weights are read for the key
    assert "extra_teacher_weights" not in stage_settings(PipelineConfig(run_dir=str(tmp_path / "run")), "distill")


def statuses(result) -> dict[str, str]:
    return {stage: info["status"] for stage, info in result.stages.items()}


def test_skip_when_unchanged_rerun_on_change_and_from(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    config = tiny_pipeline(tiny_bert, train, evaluation, tmp_path / "run")
    first = run_pipeline(config)
    assert statuses(first) == dict.fromkeys(("finetune", "distill", "export", "explain", "report"), "ran")
    assert first.report == tmp_path / "run" / "report.html" and first.report.is_file()
    for stage in ("finetune", "distill", "export", "explain"):
        manifest = json.loads((tmp_path / "run" / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["packages"]["torch"] and "timings_seconds" in manifest

    assert set(statuses(run_pipeline(config)).values()) == {"skipped"}

    config.distill_train.learning_rate = 2e-3  # a distillation setting: fine-tuning stays
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


def test_resume_after_kill_matches_uninterrupted_run(tiny_bert, sentiment_files, tmp_path):
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

    result = run_pipeline(config)  # the same command again
    assert statuses(result) == {"finetune": "ran"}
    log = json.loads((folder / "training_log.json").read_text())
    assert [e["step"] for e in log if "loss" in e][:2] == [2, 4]  # history from before the kill was kept
    texts = ["the film was superb", "boring and sad"]
    np.testing.assert_allclose(logits_of(folder, texts), logits_of(tmp_path / "straight" / "finetune", texts),
                               atol=1e-4)
