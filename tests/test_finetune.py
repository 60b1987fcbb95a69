"""The fine-tuning stage on tiny random models: outputs, label names, LoRA merge, GPT-style padding, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, sentiment_rows, write_csv

from pipelines.config import DataSettings, FinetuneConfig, LoraSettings, ModelSettings, TrainSettings
from pipelines.errors import UserError
from pipelines.finetune import run_finetune


def tiny_config(model: Path, train: Path, evaluation: Path | None, out: Path, method="lora", **train_kw):
    train_settings = dict(max_steps=12, batch_size=8, eval_batch_size=16, learning_rate=5e-3, warmup=0,
                          eval_strategy="steps", eval_steps=6, logging_steps=3, num_threads=1)
    train_settings.update(train_kw)
    return FinetuneConfig(
        output_dir=str(out),
        model=ModelSettings(name=str(model), max_length=32),
        data=DataSettings(train_file=str(train), eval_file=str(evaluation) if evaluation else None),
        lora=LoraSettings(method=method, r=4, alpha=8, dropout=0.0),
        train=TrainSettings(**train_settings),
    )


def logits_of(model_dir: Path, texts: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama", "tiny_gpt2"])
def test_lora_output_loads_in_plain_pipeline_with_label_names(request, model_fixture, sentiment_files, tmp_path):
    from transformers import pipeline

    model_dir = request.getfixturevalue(model_fixture)
    train, evaluation = sentiment_files
    out = tmp_path / "out"
    result = run_finetune(tiny_config(model_dir, train, evaluation, out))

    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "config.yaml",
                 "README.md", "manifest.json", "training_log.json", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not (out / "checkpoints").exists()
    assert not list(out.glob(".staging-*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    evaluated = metrics["eval"]
    assert set(evaluated["per_class"]) == {"neg", "pos"}
    assert sum(map(sum, evaluated["confusion_matrix"]["counts"])) == 16
    assert 0 < metrics["parameters"]["trained"] < metrics["parameters"]["total"]

    classify = pipeline("text-classification", model=str(out))
    predictions = classify(["the movie was great", "awful plot"])
    assert {p["label"] for p in predictions} <= {"neg", "pos"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert config["pad_token_id"] is not None


@pytest.mark.parametrize("variant", ["lora", "dora", "rslora", "head_only"])
def test_merged_model_equals_base_plus_adapter(tiny_bert, sentiment_files, tmp_path, variant):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train, evaluation = sentiment_files
    out = tmp_path / "out"
    config = tiny_config(tiny_bert, train, evaluation, out)
    config.lora.use_dora = variant == "dora"
    config.lora.use_rslora = variant == "rslora"
    config.lora.modules_to_save = [] if variant == "head_only" else None  # default: the pooler too
    run_finetune(config)
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (adapter_config["use_dora"], adapter_config["use_rslora"]) == (variant == "dora", variant == "rslora")
    assert "classifier" in adapter_config["modules_to_save"]
    assert ("pooler" in adapter_config["modules_to_save"]) == (variant != "head_only")
    from safetensors.torch import load_file

    adapter_weights = load_file(out / "adapter" / "adapter_model.safetensors")
    pooler_keys = [key for key in adapter_weights if ".pooler." in key]
    if variant != "head_only":  # trained in full, not through low-rank factors
        assert pooler_keys and not any("lora_" in key for key in pooler_keys)
        pretrained = load_file(tiny_bert / "model.safetensors")
        trained = load_file(out / "model.safetensors")
        change = trained["bert.pooler.dense.weight"] - pretrained["pooler.dense.weight"]
        assert change.abs().max() > 1e-4
    else:
        assert pooler_keys and all("lora_" in key for key in pooler_keys)
    texts = ["the film was superb", "boring and sad", "it is not really good but fine"]
    merged = logits_of(out, texts)

    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}
    )
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        unmerged = adapted(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(merged, unmerged, atol=1e-5)


def test_loraplus_trains_b_matrices_faster(tiny_bert, sentiment_files, tmp_path):
    from transformers import TrainerCallback

    class Rates(TrainerCallback):
        seen: list[tuple[float, float]] = []

        def on_step_end(self, args, state, control, optimizer=None, model=None, **kwargs):
            names = {id(p): n for n, p in model.named_parameters()}
            by_kind = {}
            for group in optimizer.param_groups:
                for param in group["params"]:
                    kind = "B" if "lora_B" in names[id(param)] else "A" if "lora_A" in names[id(param)] else None
                    if kind:
                        by_kind.setdefault(kind, set()).add(group["lr"])
            assert len(by_kind["A"]) == len(by_kind["B"]) == 1
            self.seen.append((by_kind["A"].pop(), by_kind["B"].pop()))

    train, evaluation = sentiment_files
    config = tiny_config(tiny_bert, train, evaluation, tmp_path / "out", max_steps=3, eval_strategy="no")
    config.lora.loraplus_lr_ratio = 16.0
    run_finetune(config, callbacks=[Rates()])
    assert len(Rates.seen) == 3 and Rates.seen[0][0] > 0
    for a, b in Rates.seen:  # the scheduler scales both groups alike
        assert b == pytest.approx(16 * a)
    with pytest.raises(UserError, match="loraplus_lr_ratio must be >= 1"):
        LoraSettings(loraplus_lr_ratio=0.5)


def test_train_dropout_sets_the_model_rates_but_not_lora_nor_the_saved_config(tiny_bert, sentiment_files, tmp_path):
    from torch import nn
    from transformers import TrainerCallback

    class Rates(TrainerCallback):
        seen: dict = {}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            for name, module in model.named_modules():
                if isinstance(module, nn.Dropout):
                    Rates.seen.setdefault("lora" if "lora_dropout" in name else "model", set()).add(module.p)

    train, evaluation = sentiment_files
    config = tiny_config(tiny_bert, train, evaluation, tmp_path / "out", max_steps=2, eval_strategy="no", dropout=0.0)
    config.lora.dropout = 0.2
    run_finetune(config, callbacks=[Rates()])
    assert Rates.seen == {"model": {0.0}, "lora": {0.2}}
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == 0.1
    with pytest.raises(UserError, match=r"train.dropout must lie in \[0, 1\), got 1.0"):
        TrainSettings(dropout=1.0)


def test_unknown_module_to_save_is_refused_before_training(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    config = tiny_config(tiny_bert, train, evaluation, tmp_path / "out")
    config.lora.modules_to_save = ["poolr"]
    with pytest.raises(UserError, match="lora.modules_to_save names 'poolr', which this model does not have"):
        run_finetune(config)
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_gpt2"])
def test_gpt_style_padding_does_not_change_logits(request, model_fixture, sentiment_files, tmp_path):
    """A decoder classifier reads the last real token: padded batches must equal one-by-one logits."""
    train, evaluation = sentiment_files
    out = tmp_path / "out"
    run_finetune(tiny_config(request.getfixturevalue(model_fixture), train, evaluation, out))
    texts = ["great", "the movie was really very boring and the plot poor"]
    batched = logits_of(out, texts)
    single = np.concatenate([logits_of(out, [t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_full_finetuning_learns_the_keyword(tiny_bert, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(256, seed=1))
    evaluation = write_csv(tmp_path / "eval.csv", sentiment_rows(64, seed=2))
    out = tmp_path / "out"
    result = run_finetune(tiny_config(tiny_bert, train, evaluation, out, method="full", max_steps=160,
                                      batch_size=16, learning_rate=1e-3, eval_steps=80))
    assert not (out / "adapter").exists()
    assert result.metrics["eval"]["accuracy"] >= 0.9
    assert result.metrics["parameters"]["trained"] == result.metrics["parameters"]["total"]


def test_sentence_pairs_train(tiny_bert, tmp_path):
    rows = [(t, "it is", y) for t, y in sentiment_rows(48)]
    train = write_csv(tmp_path / "train.csv", rows, header=("premise", "hypothesis", "label"))
    config = tiny_config(tiny_bert, train, None, tmp_path / "out", max_steps=4, eval_steps=2)
    config.data.text_column, config.data.text_pair_column = "premise", "hypothesis"
    result = run_finetune(config)
    assert result.metrics["data"]["eval_examples"] == 5  # the held-out stratified 10%


class StopAt:
    """A TrainerCallback that interrupts training once it reaches a step (as a kill would)."""

    def __init__(self, step: int):
        self.step = step

    def __getattr__(self, name):  # every other callback event does nothing
        return lambda *args, **kwargs: None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt


def test_resume_continues_from_checkpoint_and_matches_uninterrupted(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    straight = run_finetune(tiny_config(tiny_bert, train, evaluation, tmp_path / "straight", eval_steps=4))

    out = tmp_path / "resumed"
    config = tiny_config(tiny_bert, train, evaluation, out, eval_steps=4)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config, callbacks=[StopAt(6)])
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    assert not (out / "manifest.json").exists()
    with pytest.raises(UserError, match="unfinished run; pass --resume"):
        run_finetune(config)
    changed = tiny_config(tiny_bert, train, evaluation, out, eval_steps=4, learning_rate=1e-2)
    with pytest.raises(UserError, match="setting 'train.learning_rate' differs"):
        run_finetune(changed, resume=True)
    resumed = run_finetune(config, resume=True)

    assert resumed.metrics["train"]["global_step"] == 12
    log = json.loads((out / "training_log.json").read_text())
    assert min(entry["step"] for entry in log) <= 4  # history before the interruption was kept
    texts = ["the film was superb", "boring and sad"]
    np.testing.assert_allclose(logits_of(out, texts), logits_of(tmp_path / "straight", texts), atol=1e-4)
    assert resumed.metrics["eval"]["accuracy"] == pytest.approx(straight.metrics["eval"]["accuracy"])


def test_output_folder_guards(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    out = tmp_path / "out"
    config = tiny_config(tiny_bert, train, evaluation, out, max_steps=2, eval_steps=2)
    run_finetune(config)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(UserError, match="already holds a finished run; pass --overwrite"):
        run_finetune(config)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    run_finetune(config, overwrite=True)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    config.output_dir = str(foreign)
    with pytest.raises(UserError, match="not empty"):
        run_finetune(config, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"

    a_file = tmp_path / "file"
    a_file.write_text("x")
    config.output_dir = str(a_file)
    with pytest.raises(UserError, match="is a file"):
        run_finetune(config)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "finetune.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_cli_bad_input_is_one_line_and_writes_nothing(tiny_bert, tmp_path):
    train = write_csv(tmp_path / "t.csv", [("good", "pos"), ("bad", "neg")], header=("sentence", "label"))
    out = tmp_path / "out"
    done = run_script("--model", str(tiny_bert), "--train-file", str(train), "--output-dir", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no text column 'text'" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()

    done = run_script("--model", str(tmp_path / "missing"), "--train-file", str(train), "--output-dir", str(out))
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr

    done = run_script("--model", "bert-base-uncased", "--train-file", str(train), "--output-dir", str(out),
                      "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "HF_HUB_OFFLINE=0" in done.stderr


def test_cli_trains_and_reports(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    out = tmp_path / "out"
    done = run_script("--model", str(tiny_bert), "--train-file", str(train), "--eval-file", str(evaluation),
                      "--output-dir", str(out), "--max-steps", "2", "--batch-size", "8", "--lora-r", "2")
    assert done.returncode == 0, done.stderr
    assert f"model written to {out}" in done.stdout
    assert json.loads((out / "config.json").read_text())["id2label"]["1"] == "pos"
