"""Every training option in one table (as peft's test_custom_models does for its methods): each row sets one
option on a tiny fine-tuning run and checks the effect only that option has."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler
from transformers import TrainerCallback

from finetune.config import LoraSettings
from finetune.stage import run_finetune
from pipelines.errors import UserError
from pipelines.training.dropout import FastDropout
from pipelines.training.sampling import ShuffledLengthGroupedSampler
from pipelines.training.settings import TrainSettings
from tests.conftest import logits_of, tiny_config


@dataclass
class Seen:
    """What a probe callback saw of the run: the Trainer's sampler, dropout modules, learning rates, losses."""

    sampler: object = None
    dropouts: set = field(default_factory=set)
    rates: list = field(default_factory=list)  # per step: {"A": lr, "B": lr} of the LoRA matrices
    bf16: bool = False
    losses: list = field(default_factory=list)  # (training loss, plain cross-entropy, smoothed at 0.2) per step


class Probe(TrainerCallback):
    def __init__(self, seen: Seen):
        self.seen = seen

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.seen.dropouts = {type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout)}
        self.seen.bf16 = args.bf16

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        names = {id(p): n for n, p in model.named_parameters()}
        rates = {}
        for group in optimizer.param_groups:
            for param in group["params"]:
                name = names.get(id(param), "")
                kind = "B" if "lora_B" in name else "A" if "lora_A" in name else None
                if kind:
                    rates[kind] = group["lr"]
        self.seen.rates.append(rates)


def lora_effects(out: Path, base: Path, adapter: dict) -> None:
    """The merged model is the base model plus the adapter, to float precision."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["the film was superb", "boring and sad", "it is not really good but fine"]
    base_model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    adapted = PeftModel.from_pretrained(base_model, out / "adapter").eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        unmerged = adapted(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(logits_of(out, texts), unmerged, atol=1e-5)


def check_lora(seen, out, base, metrics):
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert not adapter["use_dora"] and not adapter["use_rslora"]
    assert set(adapter["modules_to_save"]) >= {"classifier", "pooler"}  # the pooler trains in full by default
    assert 0 < metrics["parameters"]["trained"] < metrics["parameters"]["total"]
    lora_effects(out, base, adapter)


def check_dora(seen, out, base, metrics):
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["use_dora"]
    lora_effects(out, base, {})


def check_rslora(seen, out, base, metrics):
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["use_rslora"]
    lora_effects(out, base, {})


def check_head_only(seen, out, base, metrics):
    from safetensors.torch import load_file

    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert "pooler" not in adapter["modules_to_save"]
    pooler = [k for k in load_file(out / "adapter" / "adapter_model.safetensors") if ".pooler." in k]
    assert pooler and all("lora_" in k for k in pooler)  # it learns through low-rank factors only
    lora_effects(out, base, adapter)


def check_full(seen, out, base, metrics):
    assert not (out / "adapter").exists()
    assert metrics["parameters"]["trained"] == metrics["parameters"]["total"]
    assert not seen.rates[0]  # no LoRA matrices


def check_loraplus(seen, out, base, metrics):
    assert len(seen.rates) == 3 and seen.rates[0]["A"] > 0
    for rates in seen.rates:  # the scheduler scales both groups alike
        assert rates["B"] == pytest.approx(16 * rates["A"])


def check_plain_rates(seen, out, base, metrics):
    assert all(rates["B"] == rates["A"] for rates in seen.rates)


def check_fast_dropout(seen, out, base, metrics):
    assert FastDropout in seen.dropouts


def check_torch_dropout(seen, out, base, metrics):
    assert seen.dropouts == {torch.nn.Dropout}


def check_grouped(seen, out, base, metrics):
    assert isinstance(seen.sampler, ShuffledLengthGroupedSampler)


def check_random_order(seen, out, base, metrics):
    assert isinstance(seen.sampler, RandomSampler)


def check_bf16(seen, out, base, metrics):
    assert seen.bf16 and np.isfinite(metrics["train"]["train_loss"])


def check_label_smoothing(seen, out, base, metrics):
    assert len(seen.losses) == 3
    for trained, plain, smoothed in seen.losses:
        assert abs(trained - smoothed) < 1e-6 and abs(trained - plain) > 1e-4


def check_plain_loss(seen, out, base, metrics):
    for trained, plain, _ in seen.losses:
        assert abs(trained - plain) < 1e-6


# id, changes to the tiny fine-tuning config, the check of its effect
OPTIONS = [
    ("lora", {}, lambda *a: [check(*a) for check in (check_lora, check_plain_rates, check_fast_dropout,
                                                      check_grouped, check_plain_loss)]),
    ("dora", {"lora.use_dora": True}, check_dora),
    ("rslora", {"lora.use_rslora": True}, check_rslora),
    ("head_only", {"lora.modules_to_save": []}, check_head_only),
    ("full", {"lora.method": "full"}, check_full),
    ("loraplus", {"lora.loraplus_lr_ratio": 16.0}, check_loraplus),
    ("torch_dropout", {"train.fast_dropout": False}, check_torch_dropout),
    ("random_order", {"train.group_by_length": False}, check_random_order),
    ("bf16", {"train.bf16": True}, check_bf16),
    ("label_smoothing", {"train.label_smoothing": 0.2}, check_label_smoothing),
]


@pytest.mark.parametrize("name, changes, check", OPTIONS, ids=[o[0] for o in OPTIONS])
def test_option_takes_effect(name, changes, check, tiny_bert, sentiment_files, tmp_path, monkeypatch):
    from pipelines.training import trainer as trainer_module

    train, evaluation = sentiment_files
    out = tmp_path / "out"
    config = tiny_config(tiny_bert, train, evaluation, out, max_steps=3, eval_strategy="no")
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        setattr(getattr(config, section), key, value)
    seen = Seen()
    real_compute_loss = trainer_module.StageTrainer.compute_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:  # the Trainer's loss of this batch without dropout, beside cross-entropy by hand
            seen.sampler = seen.sampler or self._get_train_sampler()
            model.eval()
            with torch.no_grad():
                trainers = real_compute_loss(self, model, dict(inputs))
                logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits.float()
            model.train()
            labels = inputs["labels"]
            seen.losses.append((float(trainers), float(torch.nn.functional.cross_entropy(logits, labels)),
                                float(torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2))))
        return real_compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    monkeypatch.setattr(trainer_module.StageTrainer, "compute_loss", compute_loss)
    result = run_finetune(config, callbacks=[Probe(seen)])
    check(seen, out, tiny_bert, result.metrics)


@pytest.mark.parametrize("make, message", [
    (lambda: LoraSettings(loraplus_lr_ratio=0.5), "loraplus_lr_ratio must be >= 1"),
    (lambda: LoraSettings(dropout=1.0), r"lora.dropout must be in \[0, 1\)"),
    (lambda: TrainSettings(label_smoothing=1.0), r"train.label_smoothing must lie in \[0, 1\), got 1.0"),
    (lambda: TrainSettings(label_smoothing=-0.1), r"train.label_smoothing must lie in \[0, 1\), got -0.1"),
])
def test_bad_option_values_are_refused_by_name(make, message):
    with pytest.raises(UserError, match=message):
        make()
