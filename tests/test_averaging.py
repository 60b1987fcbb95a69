"""The weight average (EMA): its arithmetic, evaluation on it, the published model, and resuming with it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_finetune import StopAt, logits_of, tiny_config

from pipelines.averaging import EMA_FILE, WeightAverage, averaging_decay
from pipelines.errors import UserError
from pipelines.finetune import run_finetune


def test_decay_ramps_up_then_caps():
    assert averaging_decay(0.999, 1) == pytest.approx(2 / 11)
    assert averaging_decay(0.999, 90) == pytest.approx(91 / 100)
    assert averaging_decay(0.5, 9) == 0.5  # 10 / 19 > 0.5


def test_average_and_swap_on_a_linear_layer(tmp_path):
    layer = torch.nn.Linear(3, 2)
    layer.bias.requires_grad_(False)  # only trained parameters are averaged
    args = SimpleNamespace(output_dir=str(tmp_path), should_save=True, load_best_model_at_end=False)
    average = WeightAverage(0.5)
    average.on_train_begin(args, SimpleNamespace(global_step=0), None, model=layer)
    expected = layer.weight.detach().clone()
    for step in (1, 2, 3):
        with torch.no_grad():
            layer.weight.add_(1.0)
        average.on_step_end(args, SimpleNamespace(global_step=step), None, model=layer)
        decay = averaging_decay(0.5, step)
        expected = decay * expected + (1 - decay) * layer.weight.detach()
    assert set(average.shadow) == {"weight"}
    torch.testing.assert_close(average.shadow["weight"], expected)

    live = layer.weight.detach().clone()
    with average.applied(layer):
        torch.testing.assert_close(layer.weight.detach(), expected)
    torch.testing.assert_close(layer.weight.detach(), live)  # restored after the block

    (tmp_path / "checkpoint-3").mkdir()
    average.on_save(args, SimpleNamespace(global_step=3), None)
    torch.testing.assert_close(load_file(tmp_path / "checkpoint-3" / EMA_FILE)["weight"], expected)
    best_without_average = tmp_path / "checkpoint-2"  # e.g. a kill between the checkpoint and its average
    best_without_average.mkdir()
    args.load_best_model_at_end = True
    average.on_train_end(args, SimpleNamespace(global_step=3, best_model_checkpoint=str(best_without_average)),
                         None, model=layer)
    torch.testing.assert_close(layer.weight.detach(), live)  # the best checkpoint's live weights stay
    args.load_best_model_at_end = False
    average.on_train_end(args, SimpleNamespace(global_step=3, best_model_checkpoint=None), None, model=layer)
    torch.testing.assert_close(layer.weight.detach(), expected)  # the average is what gets published


class RecordWeights:
    """A TrainerCallback copying every parameter at the start, after each optimizer step and as evaluated."""

    def __init__(self):
        self.by_step: dict[int, dict[str, torch.Tensor]] = {}
        self.evaluated: dict[int, dict[str, torch.Tensor]] = {}

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.on_step_end(args, state, control, model=model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.evaluated[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    def averages(self, decay: float) -> dict[int, dict[str, torch.Tensor]]:
        """Step -> the moving average of the recorded weights up to it, computed by hand."""
        averages, average = {}, self.by_step[0]
        for step in range(1, max(self.by_step) + 1):
            weight = averaging_decay(decay, step)
            average = {n: weight * average[n] + (1 - weight) * self.by_step[step][n] for n in average}
            averages[step] = average
        return averages


def test_published_model_is_the_average_at_the_best_evaluation(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    out = tmp_path / "out"
    recorder = RecordWeights()
    config = tiny_config(tiny_bert, train, evaluation, out, method="full", eval_steps=3, learning_rate=1e-3,
                         weight_average_decay=0.5)
    result = run_finetune(config, callbacks=[recorder])

    history = json.loads((out / "training_log.json").read_text())
    evaluations = {entry["step"]: entry["eval_accuracy"] for entry in history if "eval_accuracy" in entry}
    best_step = int(Path(result.metrics["train"]["best_checkpoint"]).name.split("-")[1])
    assert evaluations[best_step] == max(evaluations.values())
    assert result.metrics["eval"]["accuracy"] == pytest.approx(evaluations[best_step])  # evaluated on the average

    averages = recorder.averages(0.5)
    assert sorted(recorder.evaluated) == sorted(evaluations) == [3, 6, 9, 12]
    for step, evaluated in recorder.evaluated.items():  # every evaluation ran on that step's average
        for name, value in evaluated.items():
            torch.testing.assert_close(value, averages[step][name], rtol=1e-5, atol=1e-6)
    published = load_file(out / "model.safetensors")
    shared = [n for n in published if n in averages[best_step]]
    assert len(shared) == len(averages[best_step])
    for name in shared:
        torch.testing.assert_close(published[name], averages[best_step][name], rtol=1e-5, atol=1e-6)
    live = recorder.by_step[best_step]
    assert any(not torch.allclose(published[n], live[n]) for n in shared)  # not that step's live weights
    assert "exponential moving average of the trained ones (decay 0.5)" in (out / "README.md").read_text()


def test_resume_continues_the_average(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    kwargs = dict(method="full", eval_steps=4, learning_rate=1e-3, weight_average_decay=0.5, save_total_limit=3)
    straight = tmp_path / "straight"
    with pytest.raises(KeyboardInterrupt):
        run_finetune(tiny_config(tiny_bert, train, evaluation, straight, **kwargs), callbacks=[StopAt(9)])
    out = tmp_path / "resumed"
    config = tiny_config(tiny_bert, train, evaluation, out, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config, callbacks=[StopAt(6)])
    assert (out / "checkpoints" / "checkpoint-4" / EMA_FILE).is_file()
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config, resume=True, callbacks=[StopAt(9)])
    at_8 = [load_file(folder / "checkpoints" / "checkpoint-8" / EMA_FILE) for folder in (straight, out)]
    assert at_8[0].keys() == at_8[1].keys()
    for name in at_8[0]:  # the resumed run continued the average saved at step 4, not a fresh one
        torch.testing.assert_close(at_8[1][name], at_8[0][name], rtol=0, atol=1e-7)

    resumed = run_finetune(config, resume=True)
    finished = run_finetune(tiny_config(tiny_bert, train, evaluation, straight, **kwargs), resume=True)
    texts = ["the film was superb", "boring and sad"]
    np.testing.assert_allclose(logits_of(out, texts), logits_of(straight, texts), atol=1e-5)
    assert resumed.metrics["eval"]["accuracy"] == pytest.approx(finished.metrics["eval"]["accuracy"])


def test_bad_decay_is_refused():
    from pipelines.config import TrainSettings

    with pytest.raises(UserError, match="weight_average_decay must lie in"):
        TrainSettings(weight_average_decay=1.0)
