"""The distillation stage end to end: students of each kind, cached teacher logits, cross-tokenizer students,
the teacher's recorded data, refusals."""

from __future__ import annotations

import json

import pytest

from distill.config import AugmentSettings, DistillConfig, LossSettings, StudentSettings
from distill.stage import run_distill
from finetune.stage import run_finetune
from pipelines.data import DataSettings, read_record, recorded_data
from pipelines.errors import UserError
from pipelines.training.settings import TrainSettings
from tests.conftest import sentiment_rows, tiny_config, write_csv


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory, tiny_bert):
    """A tiny BERT teacher fine-tuned (full) to find the sentiment word, with its data files."""
    folder = tmp_path_factory.mktemp("distill")
    train = write_csv(folder / "train.csv", sentiment_rows(256, seed=1))
    evaluation = write_csv(folder / "eval.csv", sentiment_rows(64, seed=2))
    run_finetune(tiny_config(tiny_bert, train, evaluation, folder / "teacher", method="full", max_steps=160,
                             batch_size=16, learning_rate=1e-3, eval_steps=80))
    return folder / "teacher", train, evaluation


def distill_config(teacher, train, evaluation, out, student: StudentSettings, augment_copies: int = 0,
                   **kw) -> DistillConfig:
    """A 40-step distillation of the teacher on the given files (train None: the teacher's recorded data)."""
    return DistillConfig(
        output_dir=str(out), teacher=str(teacher), student=student, augment=AugmentSettings(copies=augment_copies),
        data=DataSettings(train_file=str(train), eval_file=str(evaluation)) if train else DataSettings(),
        train=TrainSettings(max_steps=40, batch_size=16, learning_rate=2e-3, warmup=0, eval_strategy="no",
                            logging_steps=10, num_threads=1),
        **kw,
    )


def test_layer_student_end_to_end_and_cached_logits_reused(teacher_and_data, tmp_path):
    from transformers import pipeline

    teacher, train, evaluation = teacher_and_data
    config = distill_config(teacher, train, evaluation, tmp_path / "student", StudentSettings(layers=1, max_length=32))
    first = run_distill(config).metrics
    out = tmp_path / "student"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "distill_metrics.json",
                 "README.md", "manifest.json", "data.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "distill_metrics.json").read_text())
    assert saved["teacher_logits"] == {"mode": "cached", "computed_this_run": True}
    for key in ("retention", "agreement", "speedup_b1", "speedup_b32"):
        assert saved[key] > 0
    assert saved["student"]["layers"] == 1 and saved["teacher"]["layers"] == 2
    assert "Student: teacher layers [1] kept" in (out / "README.md").read_text()
    assert saved["student"]["parameters"] < saved["teacher"]["parameters"]
    assert first["student"]["dev_accuracy"] >= 0.8  # the teacher keys on one word; so does the student
    assert pipeline("text-classification", model=str(out))("a superb film")[0]["label"] in {"neg", "pos"}

    cache_files = sorted((out / "cache").glob("teacher-logits-train-*.npy"))
    assert len(cache_files) == 1
    stamp = cache_files[0].stat().st_mtime_ns
    second = run_distill(config, overwrite=True).metrics
    assert second["teacher_logits"] == {"mode": "cached", "computed_this_run": False}
    assert cache_files[0].stat().st_mtime_ns == stamp
    assert second["student"]["dev_accuracy"] == pytest.approx(first["student"]["dev_accuracy"])


@pytest.mark.parametrize("mode", ["cached", "online"])
def test_cross_tokenizer_gpt_teacher_to_bert_student(tiny_llama, tiny_bert, tmp_path, mode):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=1))
    evaluation = write_csv(tmp_path / "eval.csv", sentiment_rows(16, seed=2))
    run_finetune(tiny_config(tiny_llama, train, evaluation, tmp_path / "teacher", max_steps=4, eval_steps=4))
    config = distill_config(tmp_path / "teacher", train, evaluation, tmp_path / "student",
                            StudentSettings(model=str(tiny_bert), max_length=32), teacher_mode=mode)
    config.train.max_steps = 4
    metrics = run_distill(config).metrics
    assert metrics["teacher_logits"]["mode"] == mode
    assert 0 <= metrics["agreement"] <= 1
    student_config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert student_config["model_type"] == "bert" and student_config["id2label"] == {"0": "neg", "1": "pos"}


@pytest.mark.parametrize("init", ["prune", "pca"])
def test_narrow_student_with_hidden_loss_and_augmentation(teacher_and_data, tmp_path, caplog, init):
    teacher, train, evaluation = teacher_and_data
    config = distill_config(teacher, train, evaluation, tmp_path / "narrow",
                            StudentSettings(hidden_size=16, num_hidden_layers=1, init=init, max_length=32),
                            loss=LossSettings(hidden_weight=1.0), augment_copies=1)
    metrics = run_distill(config).metrics
    assert metrics["student"]["hidden_size"] == 16
    # the teacher's head width (16) is kept: one head; a pruned student says which teacher layer it came from
    assert json.loads((tmp_path / "narrow" / "config.json").read_text())["num_attention_heads"] == 1
    assert metrics["student"]["layer_map"] == ([1] if init == "prune" else None)
    card = (tmp_path / "narrow" / "README.md").read_text()
    assert ("16 wide, pruned from teacher layers [1]" if init == "prune" else "PCA-reduced") in card
    assert metrics["train"]["augmented_examples"] == 256
    log = json.loads((tmp_path / "narrow" / "training_log.json").read_text())
    assert any("loss_hidden" in entry for entry in log) and any("loss_soft" in entry for entry in log)
    # the hidden states need the teacher on every batch: no pass to cache its train logits first
    assert metrics["teacher_logits"]["mode"] == "online" and "the teacher runs online" in caplog.text
    assert not list((tmp_path / "narrow" / "cache").glob("teacher-logits-train-*"))
    from safetensors import safe_open

    with safe_open(tmp_path / "narrow" / "model.safetensors", "pt") as saved:
        assert not [k for k in saved.keys() if "distill_projections" in k]


def test_attention_loss_trains_eager_and_latency_is_measured_as_served(teacher_and_data, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    import distill.objective
    import distill.stage

    teacher, train, evaluation = teacher_and_data
    measured, trained_with = [], []
    real_latency, real_attention_mse = distill.stage.latency_ms, distill.objective.attention_mse

    def record_latency(backend, texts, batch_size):
        measured.append(backend.model.config._attn_implementation)
        return real_latency(backend, texts, batch_size, batches=2, warmup=1)

    def record_attention(student_maps, teacher_maps, mask):
        trained_with.append(student_maps.dim())
        return real_attention_mse(student_maps, teacher_maps, mask)

    monkeypatch.setattr(distill.stage, "latency_ms", record_latency)
    monkeypatch.setattr(distill.objective, "attention_mse", record_attention)
    config = distill_config(teacher, train, evaluation, tmp_path / "student", StudentSettings(layers=1),
                            loss=LossSettings(attention_weight=1.0))
    run_distill(config)
    assert len(trained_with) == 40 and set(trained_with) == {4}  # eager maps (batch, heads, query, key) each step
    served = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").config._attn_implementation
    assert served != "eager" and measured == [served] * 4  # teacher and student, batch 1 and 32


def test_refusals(teacher_and_data, tmp_path, tiny_bert):
    teacher, train, evaluation = teacher_and_data
    with pytest.raises(UserError, match="1 to 2 layers"):
        run_distill(distill_config(teacher, train, evaluation, tmp_path / "a", StudentSettings(layers=3)))
    with pytest.raises(UserError, match="choose one student"):
        run_distill(distill_config(teacher, train, evaluation, tmp_path / "b", StudentSettings()))
    with pytest.raises(UserError, match="need a student with the teacher's tokenizer"):
        run_distill(distill_config(teacher, train, evaluation, tmp_path / "c", StudentSettings(model=str(tiny_bert)),
                                   loss=LossSettings(hidden_weight=1.0)))
    with pytest.raises(UserError, match="does not exist"):
        run_distill(distill_config(tmp_path / "nope", train, evaluation, tmp_path / "d", StudentSettings(layers=1)))
    with pytest.raises(UserError, match="teacher's 2 attention heads \\(this one has 1\\)"):
        run_distill(distill_config(teacher, train, evaluation, tmp_path / "e",
                                   StudentSettings(hidden_size=16, num_hidden_layers=1),
                                   loss=LossSettings(attention_weight=1.0)))
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_without_data_the_student_learns_on_the_teachers_split(tiny_bert, tmp_path):
    """A teacher trained without an eval file held out a seeded split: the student gets the same one, unasked."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(80, seed=4))
    teacher = tmp_path / "teacher"
    run_finetune(tiny_config(tiny_bert, train, None, teacher, method="full", max_steps=4, eval_strategy="no",
                             seed=5))
    out = tmp_path / "student"
    config = distill_config(teacher, None, None, out, StudentSettings(layers=1))
    config.train.max_steps, config.train.seed = 4, 42  # another seed than the teacher's: the split is still its own
    metrics = run_distill(config).metrics
    teachers, students = recorded_data(teacher), recorded_data(out)
    assert teachers.eval["text"] == students.eval["text"] and len(students.eval) == 8
    assert read_record(out).seed == 5 and read_record(out).max_length == 32
    assert metrics["student"]["dev_accuracy"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["eval"]["accuracy"])
    limited = distill_config(teacher, None, None, tmp_path / "fewer", StudentSettings(layers=1))
    limited.data.max_train_samples, limited.train.max_steps = 16, 2  # a setting given on top of the record
    assert run_distill(limited).metrics["train"]["train_examples"] == 16
