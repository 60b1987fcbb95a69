"""Token-level distillation of tiny Llama and GPT-2 decoders: the top-k cache holds the teacher's top-k, the KD
loss matches a hand computation, and a student of half the layers is trained and measured end to end."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from distill.causal_lm import TopK, counted_positions, teacher_top_k, top_k_kl
from distill.config import DistillConfig, LossSettings, StudentSettings
from distill.influence import most_influential
from distill.stage import run_distill
from finetune.stage import run_finetune
from pipelines.errors import UserError
from pipelines.lm_data import IGNORE, tokenize_lm
from pipelines.models import load_trained_causal_lm
from pipelines.training.settings import TrainSettings
from tests.conftest import tiny_config
from tests.finetune.test_causal_lm import rows, write_jsonl


def test_top_k_kl_by_hand():
    # the teacher's top-2 log-probabilities (at T) log 0.6 and log 0.2 on tokens 0 and 2, its tail 0.2;
    # the student's probabilities 0.5, 0.3, 0.2 at T = 1: 0.5 and 0.2 on those tokens, its tail 0.3
    values = torch.tensor([[math.log(0.6), math.log(0.2)]])
    indices = torch.tensor([[0, 2]])
    student = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    expected = 0.6 * math.log(0.6 / 0.5) + 0.2 * math.log(0.2 / 0.2) + 0.2 * math.log(0.2 / 0.3)
    assert float(top_k_kl(student, values, indices, 1.0)[0]) == pytest.approx(expected, abs=1e-6)
    # at T = 2 the student's probabilities are proportional to the square roots
    s = np.sqrt([0.5, 0.3, 0.2]) / np.sqrt([0.5, 0.3, 0.2]).sum()
    expected = 0.6 * math.log(0.6 / s[0]) + 0.2 * math.log(0.2 / s[2]) + 0.2 * math.log(0.2 / s[1])
    assert float(top_k_kl(student, values, indices, 2.0)[0]) == pytest.approx(expected, abs=1e-6)
    # with every token kept it is the full KL
    full = torch.tensor([[math.log(0.6), math.log(0.2), math.log(0.2)]])
    exact = 0.6 * math.log(0.6 / 0.5) + 0.2 * math.log(0.2 / 0.3) + 0.2 * math.log(0.2 / 0.2)
    assert float(top_k_kl(student, full, torch.tensor([[0, 1, 2]]), 1.0)[0]) == pytest.approx(exact, abs=1e-5)


@pytest.fixture(scope="module", params=["tiny_llama", "tiny_gpt2"])
def teacher(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_teacher")
    train = write_jsonl(folder / "train.jsonl", rows(80, 3))
    config = tiny_config(request.getfixturevalue(request.param), train, None, folder / "model", method="full",
                         max_steps=30,
                         learning_rate=3e-3, eval_steps=15)
    run_finetune(dataclasses.replace(config, task="causal-lm", generation_prompts=1, max_new_tokens=2))
    return folder / "model"


def test_the_cache_holds_the_teachers_top_k_at_every_response_position(teacher, tmp_path):
    model, tokenizer = load_trained_causal_lm(str(teacher))
    from pipelines.lm_data import recorded_lm_data

    data, max_length = recorded_lm_data(teacher)
    ds = tokenize_lm(data.eval, tokenizer, max_length, tmp_path, "eval", data.fingerprint)
    cache = teacher_top_k(model, ds, tokenizer.pad_token_id, 5, temperature=2.0, batch_size=3)
    cache.save(tmp_path / "c.npz")
    cache = TopK.load(tmp_path / "c.npz")
    row = ds[2]
    keep = counted_positions(row["labels"])
    assert keep and all(row["labels"][t + 1] != IGNORE for t in keep)
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([row["input_ids"]])).logits[0] / 2.0, -1)[keep]
    start, end = cache.offsets[2], cache.offsets[3]
    np.testing.assert_array_equal(cache.indices[start:end], logprobs.topk(5).indices.numpy())
    np.testing.assert_allclose(cache.values[start:end], logprobs.topk(5).values.numpy(), atol=2e-3)


def test_a_half_depth_student_is_distilled_and_measured(teacher, tmp_path):
    config = DistillConfig(output_dir=str(tmp_path / "student"), teacher=str(teacher),
                           student=StudentSettings(layers=1), loss=LossSettings(temperature=2.0, top_k=8),
                           train=TrainSettings(max_steps=20, batch_size=8, eval_batch_size=8, learning_rate=3e-3,
                                               warmup=0, eval_strategy="no", logging_steps=5, num_threads=1))
    metrics = run_distill(config).metrics
    assert metrics["student"]["layers"] == 1 and metrics["teacher"]["layers"] == 2
    influence = metrics["student"]["teacher_layer_influence"]  # a decoder's student keeps its most influential
    assert len(influence) == 2 and metrics["student"]["layer_map"] == most_influential(influence, 1)
    assert 0.0 <= metrics["next_token_agreement"] <= 1.0
    assert metrics["student"]["perplexity"] > 0 and metrics["teacher"]["tokens_per_second"] > 0
    approximation = metrics["top_k_cache"]
    assert approximation["k"] == 8 and 0 < approximation["teacher_mass_in_top_k"] <= 1.0 + 1e-6
    assert 0 <= approximation["top_k_kl"] <= approximation["full_kl"] + 1e-3  # merging the tail lowers a KL
    saved = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert saved["perplexity_ratio"] == pytest.approx(metrics["student"]["perplexity"] /
                                                      metrics["teacher"]["perplexity"])
    model, _ = load_trained_causal_lm(str(tmp_path / "student"))
    assert model.config.num_hidden_layers == 1
    again = run_distill(config, overwrite=True).metrics  # the cache is reused
    assert not again["top_k_cache"]["computed_this_run"]


def test_a_causal_lm_student_must_be_cut_from_the_teachers_layers(teacher, tmp_path):
    config = DistillConfig(output_dir=str(tmp_path / "student"), teacher=str(teacher),
                           student=StudentSettings(model="minilm"))
    with pytest.raises(UserError, match="cut from its own layers"):
        run_distill(config)
    assert not (tmp_path / "student").exists()
