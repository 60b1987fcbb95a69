"""Distillation: losses by hand, copied layers, cached teacher logits, cross-tokenizer and narrow students."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import sentiment_rows, write_csv
from test_finetune import logits_of, tiny_config

from distill.augment import augment_rows
from distill.config import DistillConfig, DistillSettings, LossSettings, StudentSettings
from distill.losses import attention_mse, hard_ce, hidden_mse, kd_loss, soft_kl
from distill.stage import run_distill
from distill.student import evenly_spaced, fresh_student, group_tops, student_from_teacher_layers
from distill.teacher_logits import ensemble_logits
from pipelines.config import DataSettings, TrainSettings
from pipelines.errors import UserError
from pipelines.finetune import run_finetune

KL_75_25 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL([.75, .25] || [.5, .5])


def test_soft_kl_by_hand():
    student = torch.zeros(1, 2)
    assert soft_kl(student, torch.tensor([[math.log(3.0), 0.0]]), 1.0).item() == pytest.approx(KL_75_25, abs=1e-6)
    # at T = 2 the same softened distributions, and the T² factor
    assert soft_kl(student, torch.tensor([[2 * math.log(3.0), 0.0]]), 2.0).item() == pytest.approx(4 * KL_75_25,
                                                                                                     abs=1e-6)
    assert soft_kl(torch.tensor([[1.0, -2.0]]), torch.tensor([[1.0, -2.0]]), 3.0).item() == pytest.approx(0, abs=1e-7)


def test_hard_and_mixed_losses_by_hand():
    student, teacher = torch.zeros(2, 2), torch.tensor([[math.log(3.0), 0.0]] * 2)
    labels = torch.tensor([0, 1])
    assert hard_ce(student, labels).item() == pytest.approx(math.log(2), abs=1e-6)
    total, soft, hard = kd_loss(student, teacher, labels, 1.0, 0.25)
    assert soft.item() == pytest.approx(KL_75_25, abs=1e-6)
    assert hard.item() == pytest.approx(math.log(2), abs=1e-6)
    assert total.item() == pytest.approx(0.25 * KL_75_25 + 0.75 * math.log(2), abs=1e-6)
    # rows labelled -100 (augmented texts) get no hard loss; none labelled: hard is 0, not NaN
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    _, _, hard = kd_loss(logits, teacher, torch.tensor([-100, 1]), 1.0, 0.5)
    assert hard.item() == pytest.approx(math.log(2), abs=1e-6)
    total, _, hard = kd_loss(logits, teacher, torch.tensor([-100, -100]), 1.0, 0.5)
    assert hard.item() == 0 and torch.isfinite(total)


def test_hidden_and_attention_mse_by_hand():
    student = torch.tensor([[[1.0, 2.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 0]])  # the second position is padding
    assert hidden_mse(student, teacher, mask).item() == pytest.approx((1 + 4) / 2)
    double = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        double.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    assert hidden_mse(student, torch.zeros(1, 2, 3), mask, double).item() == pytest.approx((4 + 16) / 3)
    assert hidden_mse(student, teacher, torch.zeros(1, 2)).item() == 0
    attention = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])
    assert attention_mse(attention, torch.zeros_like(attention), mask).item() == pytest.approx(0.25)


def test_augmentation_copies_only_texts_long_enough():
    texts, pairs = ["great", "a dull and lifeless film", "fine film"], ["ok", "yes", "a b c"]
    copies, _ = augment_rows(texts, None, copies=2, prob=0.3, seed=0, mask_token="[MASK]", min_words=3)
    assert len(copies) == 2 and all(len(copy.split()) <= 5 for copy in copies)
    assert copies == augment_rows(texts[1:2], None, 2, 0.3, 0, "[MASK]")[0]  # deterministic, same draws
    with_pairs, copied_pairs = augment_rows(texts, pairs, copies=1, prob=0.3, seed=0, mask_token=None, min_words=3)
    assert len(with_pairs) == len(copied_pairs) == 2  # text and pair words counted together: "fine film" + "a b c"
    assert len(augment_rows(texts, None, copies=1, prob=0.3, seed=0, mask_token=None)[0]) == 3  # default: all
    with pytest.raises(UserError, match="augment_min_words must be >= 0"):
        DistillSettings(augment_min_words=-1)


def test_evenly_spaced_layer_maps():
    assert evenly_spaced(6, 3) == [0, 2, 5]
    assert evenly_spaced(6, 2) == [0, 5]
    assert evenly_spaced(6, 6) == list(range(6))
    assert evenly_spaced(6, 1) == [5]
    with pytest.raises(UserError, match="1 to 6 layers"):
        evenly_spaced(6, 7)


def test_group_tops_layer_maps():
    assert group_tops(6, 3) == [1, 3, 5]
    assert group_tops(6, 2) == [2, 5]
    assert group_tops(12, 4) == [2, 5, 8, 11]
    assert group_tops(6, 4) == [0, 2, 3, 5]
    assert group_tops(6, 6) == list(range(6))
    assert group_tops(6, 1) == [5]
    with pytest.raises(UserError, match="1 to 6 layers"):
        group_tops(6, 0)


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama", "tiny_gpt2"])
def test_copied_layers_equal_the_teachers(request, fixture):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(request.getfixturevalue(fixture), num_labels=2)
    student = student_from_teacher_layers(teacher, [1])
    assert student.config.num_hidden_layers == 1
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    checked = 0
    for key, value in student_state.items():
        source = key.replace(".0.", ".1.") if any(p in key for p in ("layer.0.", "layers.0.", "h.0.")) else key
        torch.testing.assert_close(value, teacher_state[source], rtol=0, atol=0)
        checked += 1
    assert checked == len(student_state)
    ids = torch.tensor([[3, 5, 7, 2]])
    assert student(input_ids=ids).logits.shape == (1, 2)
    with pytest.raises(UserError, match="out of range"):
        student_from_teacher_layers(teacher, [0, 2])


def test_fresh_student_is_narrow_and_starts_from_teacher_embeddings(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    student = fresh_student(teacher, hidden_size=16, num_hidden_layers=1, num_heads=2, intermediate_size=32)
    assert student.config.hidden_size == 16 and student.config.num_hidden_layers == 1
    words = student.get_input_embeddings().weight
    assert words.shape == (teacher.config.vocab_size, 16)
    # PCA keeps neighbourhoods: similarities of the reduced embeddings correlate with the teacher's
    t = torch.nn.functional.normalize(teacher.get_input_embeddings().weight.detach(), dim=1)
    s = torch.nn.functional.normalize(words.detach(), dim=1)
    assert np.corrcoef((t @ t.T).flatten().numpy(), (s @ s.T).flatten().numpy())[0, 1] > 0.3


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory, tiny_bert):
    """A tiny BERT teacher fine-tuned (full) to find the sentiment word, with its data files."""
    folder = tmp_path_factory.mktemp("distill")
    train = write_csv(folder / "train.csv", sentiment_rows(256, seed=1))
    evaluation = write_csv(folder / "eval.csv", sentiment_rows(64, seed=2))
    run_finetune(tiny_config(tiny_bert, train, evaluation, folder / "teacher", method="full", max_steps=160,
                             batch_size=16, learning_rate=1e-3, eval_steps=80))
    return folder / "teacher", train, evaluation


def distill_config(teacher, train, evaluation, out, student: StudentSettings, **kw) -> DistillConfig:
    loss = kw.pop("loss", LossSettings())
    distill = DistillSettings(teacher=str(teacher), **kw)
    return DistillConfig(
        output_dir=str(out), distill=distill, student=student, loss=loss,
        data=DataSettings(train_file=str(train), eval_file=str(evaluation)),
        train=TrainSettings(max_steps=40, batch_size=16, learning_rate=2e-3, warmup=0, eval_strategy="no",
                            logging_steps=10, num_threads=1),
    )


def test_layer_student_end_to_end_and_cached_logits_reused(teacher_and_data, tmp_path):
    from transformers import pipeline

    teacher, train, evaluation = teacher_and_data
    config = distill_config(teacher, train, evaluation, tmp_path / "student", StudentSettings(layers=1, max_length=32))
    first = run_distill(config).metrics
    out = tmp_path / "student"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "distill_metrics.json",
                 "README.md", "manifest.json"):
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

    cache_files = sorted((out / "cache").glob("teacher-logits-train-*.arrow"))
    assert len(cache_files) == 1
    stamp = cache_files[0].stat().st_mtime_ns
    second = run_distill(config, overwrite=True).metrics
    assert second["teacher_logits"] == {"mode": "cached", "computed_this_run": False}
    assert cache_files[0].stat().st_mtime_ns == stamp
    assert second["student"]["dev_accuracy"] == pytest.approx(first["student"]["dev_accuracy"])


def test_ensemble_logits_soften_to_the_members_mean_probabilities():
    a = np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    b = np.array([[0.0, 4.0], [1.0, 1.0]], dtype=np.float32)
    for temperature in (1.0, 2.0):
        combined = torch.from_numpy(ensemble_logits([a, b], temperature)) / temperature
        expected = (torch.from_numpy(a / temperature).softmax(-1) + torch.from_numpy(b / temperature).softmax(-1)) / 2
        assert torch.allclose(combined.softmax(-1), expected, atol=1e-6)
    assert ensemble_logits([a], 2.0) is a  # one teacher: its own logits, as before ensembles


def test_ensemble_teacher_end_to_end(teacher_and_data, tmp_path, tiny_bert):
    teacher, train, evaluation = teacher_and_data
    second = tmp_path / "second"
    run_finetune(tiny_config(tiny_bert, train, evaluation, second, method="full", max_steps=8, eval_steps=8, seed=7))
    out = tmp_path / "student"
    config = distill_config(teacher, train, evaluation, out, StudentSettings(layers=1, max_length=32),
                            extra_teachers=[str(second)])
    metrics = run_distill(config).metrics

    lines = evaluation.read_text().splitlines()[1:]
    texts, gold = [line.split(",")[0] for line in lines], np.array([line.split(",")[1] == "pos" for line in lines])
    member_probabilities = [torch.from_numpy(logits_of(folder, texts)).softmax(-1).numpy()
                            for folder in (teacher, second)]
    members = metrics["teacher"]["members"]
    assert [m["path"] for m in members] == [str(teacher), str(second)]
    for member, probabilities in zip(members, member_probabilities, strict=True):
        assert member["dev_accuracy"] == pytest.approx(np.mean((probabilities.argmax(-1) == 1) == gold))
    vote = (member_probabilities[0] + member_probabilities[1]).argmax(-1) == 1  # labels sort as neg, pos
    assert metrics["teacher"]["dev_accuracy"] == pytest.approx(np.mean(vote == gold))
    from transformers import AutoModelForSequenceClassification

    assert metrics["teacher"]["parameters"] == sum(
        p.numel() for folder in (teacher, second)
        for p in AutoModelForSequenceClassification.from_pretrained(folder).parameters())
    assert len(list((out / "cache").glob("teacher-logits-train-*.arrow"))) == 2
    assert "an ensemble of 2 teachers" in (out / "README.md").read_text()


def test_ensemble_refusals(teacher_and_data, tmp_path, tiny_bert):
    teacher, train, evaluation = teacher_and_data
    relabelled = write_csv(tmp_path / "relabelled.csv",
                           [(text, "good" if label == "pos" else "bad") for text, label in sentiment_rows(32, seed=3)])
    other_labels = tmp_path / "other_labels"
    run_finetune(tiny_config(tiny_bert, relabelled, None, other_labels, max_steps=2, eval_strategy="no"))
    with pytest.raises(UserError, match="extra teacher .*other_labels has labels bad, good; the teacher has neg, pos"):
        run_distill(distill_config(teacher, train, evaluation, tmp_path / "a", StudentSettings(layers=1),
                                   extra_teachers=[str(other_labels)]))
    with pytest.raises(UserError, match="extra_teachers needs distill.teacher_mode cached"):
        run_distill(distill_config(teacher, train, evaluation, tmp_path / "b", StudentSettings(layers=1),
                                   extra_teachers=[str(other_labels)], teacher_mode="online"))
    with pytest.raises(UserError, match="lists a teacher twice"):
        run_distill(distill_config(teacher, train, evaluation, tmp_path / "c", StudentSettings(layers=1),
                                   extra_teachers=[str(teacher) + "/"]))
    assert not any((tmp_path / name).exists() for name in "abc")


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


def test_student_published_as_its_weight_average(teacher_and_data, tmp_path):
    from safetensors.torch import load_file
    from test_averaging import RecordWeights

    teacher, train, evaluation = teacher_and_data
    config = distill_config(teacher, train, evaluation, tmp_path / "student", StudentSettings(layers=1, max_length=32),
                            loss=LossSettings(hidden_weight=1.0))  # online teacher
    config.train.eval_strategy, config.train.eval_steps, config.train.weight_average_decay = "steps", 10, 0.5
    recorder = RecordWeights()
    metrics = run_distill(config, callbacks=[recorder]).metrics
    log = json.loads((tmp_path / "student" / "training_log.json").read_text())
    evaluations = {entry["step"]: entry["eval_accuracy"] for entry in log if "eval_accuracy" in entry}
    best_step = max(evaluations, key=lambda step: (evaluations[step], -step))  # the first best is kept
    assert metrics["student"]["dev_accuracy"] == pytest.approx(evaluations[best_step])

    average = recorder.averages(0.5)[best_step]
    published = load_file(tmp_path / "student" / "model.safetensors")
    for name in average:
        torch.testing.assert_close(published[name], average[name], rtol=1e-5, atol=1e-6)
    assert "exponential moving average" in (tmp_path / "student" / "README.md").read_text()


def test_student_layers_learn_at_decayed_rates(teacher_and_data, tmp_path):
    from test_layer_decay import RecordRates

    teacher, train, evaluation = teacher_and_data
    config = distill_config(teacher, train, evaluation, tmp_path / "student", StudentSettings(layers=1, max_length=32))
    config.train.max_steps, config.train.layer_lr_decay = 3, 0.5
    recorder = RecordRates()
    run_distill(config, callbacks=[recorder])
    assert len(recorder.seen) == 3 and recorder.seen[0]["classifier.weight"] > 0
    for rates in recorder.seen:  # one student layer: embeddings at 1/4, the layer at 1/2 of the head's rate
        head = rates["classifier.weight"]
        assert rates["bert.pooler.dense.weight"] == head
        assert rates["bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(head / 2)
        assert rates["bert.embeddings.word_embeddings.weight"] == pytest.approx(head / 4)


def test_attention_loss_trains_eager_and_latency_is_measured_as_served(teacher_and_data, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    import distill.stage
    import distill.trainer

    teacher, train, evaluation = teacher_and_data
    measured, trained_with = [], []
    real_latency, real_attention_mse = distill.stage.latency_ms, distill.trainer.attention_mse

    def record_latency(backend, texts, batch_size):
        measured.append(backend.model.config._attn_implementation)
        return real_latency(backend, texts, batch_size, batches=2, warmup=1)

    def record_attention(student_maps, teacher_maps, mask):
        trained_with.append(student_maps.dim())
        return real_attention_mse(student_maps, teacher_maps, mask)

    monkeypatch.setattr(distill.stage, "latency_ms", record_latency)
    monkeypatch.setattr(distill.trainer, "attention_mse", record_attention)
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
