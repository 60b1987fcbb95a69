"""Layer-wise learning-rate decay: the rate of every parameter, the Trainer's schedule over it, the refusals."""

from __future__ import annotations

import pytest
import torch
from test_finetune import tiny_config
from transformers import TrainerCallback

from pipelines.config import FinetuneConfig, LoraSettings, TrainSettings
from pipelines.errors import UserError
from pipelines.finetune import run_finetune
from pipelines.layer_decay import layer_decay_groups, parameter_depth
from pipelines.models import ModelSource, load_classifier, load_tokenizer


def classifier_of(folder):
    source = ModelSource(name=str(folder), location=str(folder), kind="local")
    return load_classifier(source, ["neg", "pos"], load_tokenizer(source))


@pytest.mark.parametrize(("name", "depth"), [
    ("bert.embeddings.word_embeddings.weight", 0),
    ("bert.encoder.layer.0.attention.self.query.weight", 1),
    ("base_model.model.bert.encoder.layer.1.output.dense.lora_A.default.weight", 2),
    ("bert.pooler.dense.weight", 3),
    ("classifier.weight", 3),
    ("transformer.wte.weight", 0),
    ("transformer.h.1.attn.c_attn.weight", 2),
    ("transformer.ln_f.weight", 3),
    ("model.embed_tokens.weight", 0),
    ("model.layers.0.mlp.up_proj.weight", 1),
    ("score.weight", 3),
])
def test_parameter_depth(name, depth):
    assert parameter_depth(name, layers=2) == depth


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_gpt2", "tiny_llama"])
def test_every_parameter_gets_its_layer_rate(request, model_fixture):
    model = classifier_of(request.getfixturevalue(model_fixture))
    groups = layer_decay_groups(model, learning_rate=1e-3, decay=0.5, weight_decay=0.01)
    rate_of = {name: (group["lr"], group["weight_decay"]) for group in groups for name in group["names"]}
    trained = {name: param for name, param in model.named_parameters() if param.requires_grad}
    assert set(rate_of) == set(trained) and sum(len(g["params"]) for g in groups) == len(trained)
    for name, param in trained.items():
        lr, weight_decay = rate_of[name]
        depth = parameter_depth(name, layers=2)
        assert lr == pytest.approx(1e-3 * 0.5 ** (3 - depth)), name
        assert weight_decay == (0.01 if param.ndim >= 2 else 0.0), name
    depths = {parameter_depth(name, 2) for name in trained}
    assert depths == {0, 1, 2, 3}  # embeddings, both layers and the head were all found


class RecordRates(TrainerCallback):
    """The learning rate of every named parameter after each optimizer step."""

    def __init__(self):
        self.seen: list[dict[str, float]] = []

    def on_step_end(self, args, state, control, optimizer=None, model=None, **kwargs):
        names = {id(p): n for n, p in model.named_parameters()}
        self.seen.append({names[id(param)]: group["lr"] for group in optimizer.param_groups
                          for param in group["params"]})


def test_trainer_schedules_every_layer_alike_and_embeddings_learn(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    config = tiny_config(tiny_bert, train, evaluation, tmp_path / "out", method="full", max_steps=4,
                         eval_strategy="no", warmup=2, layer_lr_decay=0.5)
    before = classifier_of(tiny_bert).state_dict()
    recorder = RecordRates()
    run_finetune(config, callbacks=[recorder])
    assert len(recorder.seen) == 4
    assert recorder.seen[0]["classifier.weight"] == pytest.approx(5e-3 * 0.5)  # warm-up step 1 of 2
    for rates in recorder.seen:
        assert rates["bert.embeddings.word_embeddings.weight"] == pytest.approx(rates["classifier.weight"] / 8)
        assert rates["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(rates["classifier.weight"] / 4)
        assert rates["bert.encoder.layer.1.output.dense.weight"] == pytest.approx(rates["classifier.weight"] / 2)
        assert rates["bert.pooler.dense.weight"] == rates["classifier.weight"]
    from safetensors.torch import load_file

    after = load_file(tmp_path / "out" / "model.safetensors")
    change = after["bert.embeddings.word_embeddings.weight"] - before["bert.embeddings.word_embeddings.weight"]
    assert change.abs().max() > 0
    assert "layer_lr_decay: 0.5" in (tmp_path / "out" / "README.md").read_text()


def test_refusals():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(UserError, match=r"train.layer_lr_decay must lie in \(0, 1\]"):
            TrainSettings(layer_lr_decay=bad)
    with pytest.raises(UserError, match="use one of them"):
        FinetuneConfig(lora=LoraSettings(loraplus_lr_ratio=16.0), train=TrainSettings(layer_lr_decay=0.8))
    FinetuneConfig(lora=LoraSettings(method="full", loraplus_lr_ratio=16.0), train=TrainSettings(layer_lr_decay=0.8))


def test_default_leaves_the_trainer_its_own_optimizer():
    from pipelines.layer_decay import layer_decay_optimizer

    assert layer_decay_optimizer(torch.nn.Linear(2, 2), None, 1.0) is None
