"""Faults: kill -9 at marked points, a failed save, and two runs on one folder. Nothing may be lost or
half-written, and the same command finishes with the results of an uninterrupted run."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chain.runner import run_pipeline
from finetune.config import FinetuneConfig, LoraSettings
from finetune.stage import run_finetune
from pipelines import artifacts
from pipelines.config import dump_yaml
from pipelines.data import DataSettings
from pipelines.errors import UserError
from pipelines.models import ModelSettings
from pipelines.training.settings import TrainSettings
from tests.conftest import ROOT, ResumeProbe, logits_of, sentiment_rows, tiny_pipeline, with_stage_callbacks, write_csv

TEXTS = ["the film was superb", "boring and sad", "it is a wonderful story"]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("fault_data")
    return (write_csv(folder / "train.csv", sentiment_rows(64, seed=1)),
            write_csv(folder / "eval.csv", sentiment_rows(16, seed=2)))


@pytest.fixture(scope="module")
def straight(tiny_bert, data_files, tmp_path_factory) -> Path:
    """The uninterrupted run every killed run is compared with."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    run_pipeline(tiny_pipeline(tiny_bert, *data_files, run_dir))
    return run_dir


def teacher_logits_cache(run_dir: Path) -> Path:
    (cache,) = (run_dir / "distill" / "cache").glob("teacher-logits-train-*.npy")
    return cache


def no_half_written(run_dir: Path) -> None:
    """Every stage folder is complete: a manifest, no staging leftovers, every JSON parses."""
    for stage in ("finetune", "distill", "export", "explain"):
        folder = run_dir / stage
        assert (folder / "manifest.json").is_file(), stage
        assert not list(folder.rglob(".staging-*")) and not list(folder.rglob(".*.tmp")), stage
        for path in folder.rglob("*.json"):
            json.loads(path.read_text())
    assert (run_dir / "report" / "manifest.json").is_file()
    assert (run_dir / "report" / "report.html").read_text().rstrip().endswith("</html>")


# Where the re-run's fine-tuning begins after each kill (its step and the checkpoint it resumes), and how many
# optimizer steps it takes: None when fine-tuning had finished and is skipped.
RESUMES = {"train-step": (4, 4), "checkpoint-save": (4, 4), "model-save": (8, 0), "teacher-logits": None,
           "explain": None}


@pytest.mark.parametrize("point", list(RESUMES))
def test_kill_point_rerun_finishes_with_the_uninterrupted_results(point, tiny_bert, data_files, straight, tmp_path,
                                                                   monkeypatch):
    config = tiny_pipeline(tiny_bert, *data_files, tmp_path / "run")
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(dump_yaml(config))
    killed = subprocess.run([sys.executable, str(ROOT / "tests/drivers/kill_at.py"), str(config_file), point],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert killed.returncode == -9 and f"KILL-POINT {point}" in killed.stdout, killed.stderr[-2000:]

    run_dir = tmp_path / "run"
    expected = RESUMES[point]
    if expected:  # the checkpoint it must resume from, kept aside (publishing deletes the checkpoints)
        checkpoint = shutil.copytree(run_dir / "finetune" / "checkpoints" / f"checkpoint-{expected[0]}",
                                     tmp_path / f"checkpoint-{expected[0]}")
    probe = ResumeProbe()
    with_stage_callbacks(monkeypatch, "finetune", [probe])
    result = run_pipeline(config)  # the same command again
    if expected:
        assert result.stages["finetune"]["status"] == "ran"
        probe.assert_resumed_from(checkpoint)
        assert probe.steps == expected[1]  # only the steps after the checkpoint
    else:
        assert result.stages["finetune"]["status"] == "skipped" and probe.began_at is None
    assert set(result.stages) == {"finetune", "distill", "export", "explain", "report"}
    no_half_written(run_dir)
    mine = json.loads((run_dir / "finetune" / "metrics.json").read_text())["eval"]
    theirs = json.loads((straight / "finetune" / "metrics.json").read_text())["eval"]
    assert mine == theirs
    np.testing.assert_allclose(logits_of(run_dir / "finetune", TEXTS), logits_of(straight / "finetune", TEXTS),
                               atol=1e-5)
    assert teacher_logits_cache(run_dir).read_bytes() == teacher_logits_cache(straight).read_bytes()
    student = json.loads((run_dir / "distill" / "distill_metrics.json").read_text())
    assert student["student"]["dev_accuracy"] == json.loads(
        (straight / "distill" / "distill_metrics.json").read_text())["student"]["dev_accuracy"]
    mine = json.loads((run_dir / "explain" / "explain_metrics.json").read_text())
    theirs = json.loads((straight / "explain" / "explain_metrics.json").read_text())
    def timeless(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert timeless(mine["faithfulness"]) == timeless(theirs["faithfulness"])
    assert timeless(mine["agreement"]) == timeless(theirs["agreement"])
    if point == "checkpoint-save":
        log = json.loads((run_dir / "finetune" / "training_log.json").read_text())
        assert [e["step"] for e in log if "loss" in e] == [2, 4, 6, 8]


def finetune_config(model: Path, data_files, output_dir: Path, steps: int = 4) -> FinetuneConfig:
    train, evaluation = data_files
    return FinetuneConfig(
        output_dir=str(output_dir), model=ModelSettings(name=str(model), max_length=32),
        data=DataSettings(train_file=str(train), eval_file=str(evaluation)), lora=LoraSettings(r=2, alpha=4),
        train=TrainSettings(max_steps=steps, batch_size=8, eval_strategy="no", num_threads=1, logging_steps=2))


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not set(p.relative_to(folder).parts) & set(artifacts.RUN_STATE)}


def test_failed_save_keeps_the_previous_model_and_says_what_failed(tiny_bert, data_files, tmp_path, monkeypatch):
    out = tmp_path / "model"
    run_finetune(finetune_config(tiny_bert, data_files, out))
    before = folder_state(out)
    assert "model.safetensors" in before and "manifest.json" in before

    from transformers import PreTrainedModel

    real_save = PreTrainedModel.save_pretrained

    def disk_full(self, save_directory, *args, **kwargs):
        if Path(save_directory).name.startswith(".staging-"):  # half the weights file, then the disk is full
            (Path(save_directory) / "model.safetensors").write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, save_directory, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    with pytest.raises(UserError, match=rf"saving the finetune result to {out} failed \(No space left on device\); "
                                        r"nothing was published and any previous result there is unchanged"):
        run_finetune(finetune_config(tiny_bert, data_files, out, steps=6), overwrite=True)
    assert folder_state(out) == before  # the previous model, byte for byte
    assert not list(out.glob(".staging-*"))
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real_save)
    run_finetune(finetune_config(tiny_bert, data_files, out, steps=6), overwrite=True)  # space freed: it works
    assert json.loads((out / "metrics.json").read_text())["train"]["global_step"] == 6


def test_second_run_on_the_same_folder_is_refused_and_neither_is_corrupted(tiny_bert, data_files, tmp_path):
    out = tmp_path / "model"
    gate = tmp_path / "go"
    driver = tmp_path / "hold.py"
    driver.write_text(f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from transformers import TrainerCallback
from finetune.stage import run_finetune
from tests.finetune.test_faults import finetune_config

class Hold(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            print("HOLDING", flush=True)
            while not Path({str(gate)!r}).exists():
                time.sleep(0.05)

run_finetune(finetune_config(Path({str(tiny_bert)!r}), ({str(data_files[0])!r}, {str(data_files[1])!r}),
                             Path({str(out)!r})), callbacks=[Hold()])
print("FIRST-DONE", flush=True)
""")
    first = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, cwd=ROOT)
    try:
        for line in first.stdout:
            if "HOLDING" in line:
                break
        for overwrite in (False, True):
            with pytest.raises(UserError, match=rf"output folder {out} is in use by another run \(pid {first.pid}\)"):
                run_finetune(finetune_config(tiny_bert, data_files, out), overwrite=overwrite)
        gate.write_text("go")
        assert "FIRST-DONE" in first.stdout.read()
        assert first.wait(timeout=300) == 0
    finally:
        gate.write_text("go")
        first.kill()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == 4 and (out / "manifest.json").is_file()
    np.testing.assert_allclose(logits_of(out, TEXTS), logits_of(out, TEXTS))  # loads: not corrupted
    run_finetune(finetune_config(tiny_bert, data_files, out), overwrite=True)  # the lock went with the first run


def test_same_config_and_seed_give_identical_results(tiny_bert, data_files, straight, tmp_path):
    """Fine-tuning, distillation, export and explanation twice on CPU: the same numbers, bit for bit."""
    run_dir = tmp_path / "again"
    run_pipeline(tiny_pipeline(tiny_bert, *data_files, run_dir))
    for stage, name in (("finetune", "metrics.json"), ("distill", "metrics.json")):
        mine, theirs = (json.loads((d / stage / name).read_text()) for d in (run_dir, straight))
        assert mine["eval"] == theirs["eval"], stage
    for stage in ("finetune", "distill"):
        assert np.array_equal(logits_of(run_dir / stage, TEXTS), logits_of(straight / stage, TEXTS)), stage
        mine, theirs = ((d / stage / "model.safetensors").read_bytes() for d in (run_dir, straight))
        assert mine == theirs, f"{stage} weights differ"
    mine, theirs = ((d / "explain" / "attributions.jsonl").read_bytes() for d in (run_dir, straight))
    assert mine == theirs  # SHAP's sampling is seeded
    for model in ("teacher", "student"):
        mine, theirs = (json.loads((d / "export" / model / "export_metrics.json").read_text()) for d in
                        (run_dir, straight))
        for key in ("onnx_fp32", "onnx_int8"):
            assert mine[key]["dev_accuracy"] == theirs[key]["dev_accuracy"]
            assert mine[key]["max_abs_logit_diff"] == theirs[key]["max_abs_logit_diff"]
