"""The fine-tuning stage on tiny random models: outputs, label names, data record, GPT-style padding, resume."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from finetune.stage import run_finetune
from pipelines.data import read_record, recorded_data
from pipelines.errors import UserError
from tests.conftest import ROOT, ResumeProbe, StopAt, logits_of, sentiment_rows, tiny_config, write_csv


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama", "tiny_gpt2"])
def test_lora_output_loads_in_plain_pipeline_with_label_names(request, model_fixture, sentiment_files, tmp_path):
    from transformers import pipeline

    model_dir = request.getfixturevalue(model_fixture)
    train, evaluation = sentiment_files
    out = tmp_path / "out"
    result = run_finetune(tiny_config(model_dir, train, evaluation, out))

    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "config.yaml", "data.json",
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
    record = read_record(out)
    assert record.label_names == ["neg", "pos"] and record.max_length == 32 and record.eval_examples == 16


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


def test_sentence_pairs_train_on_the_second_text(tiny_bert, tmp_path):
    """The label is decided by the second text alone (the first is filler): only a model that reads the pair
    can learn it."""
    def pair_rows(n, seed):
        rng = random.Random(seed)
        neutral = ["the", "movie", "film", "plot", "was", "is", "it", "this", "very", "really", "story", "actors"]
        return [(" ".join(rng.sample(neutral, rng.randint(2, 6))), text, label)
                for text, label in sentiment_rows(n, seed=seed)]

    header = ("premise", "hypothesis", "label")
    train = write_csv(tmp_path / "train.csv", pair_rows(256, 1), header=header)
    evaluation = write_csv(tmp_path / "eval.csv", pair_rows(64, 2), header=header)
    config = tiny_config(tiny_bert, train, evaluation, tmp_path / "out", method="full", max_steps=160, batch_size=16,
                         learning_rate=1e-3, eval_steps=80)
    config.data.text_column, config.data.text_pair_column = "premise", "hypothesis"
    result = run_finetune(config)
    assert result.metrics["eval"]["accuracy"] >= 0.9

    held_out = tmp_path / "held_out"  # without an eval file: a later stage finds the same split and its pairs
    config = tiny_config(tiny_bert, train, None, held_out, max_steps=2, eval_strategy="no")
    config.data.text_column, config.data.text_pair_column = "premise", "hypothesis"
    assert run_finetune(config).metrics["data"]["eval_examples"] == 26  # the stratified 10%
    rebuilt = recorded_data(held_out)
    assert rebuilt.has_pair and len(rebuilt.eval) == 26 and rebuilt.eval["text_pair"] == recorded_data(
        held_out).eval["text_pair"]
    assert set(zip(rebuilt.eval["text"], rebuilt.eval["text_pair"], strict=True)).isdisjoint(
        zip(rebuilt.train["text"], rebuilt.train["text_pair"], strict=True))


def test_checkpoints_are_chosen_on_the_selection_split_and_eval_is_scored_once(tiny_bert, sentiment_files, tmp_path):
    from transformers import TrainerCallback

    class EvaluatedOn(TrainerCallback):
        sizes: list[int] = []

        def on_evaluate(self, args, state, control, eval_dataloader=None, **kwargs):
            self.sizes.append(len(eval_dataloader.dataset))

    train, evaluation = sentiment_files  # 64 and 16 rows
    out = tmp_path / "out"
    config = tiny_config(tiny_bert, train, evaluation, out, eval_steps=4)
    config.data.selection_split = 0.125
    metrics = run_finetune(config, callbacks=[EvaluatedOn()]).metrics
    assert EvaluatedOn.sizes == [8, 8, 8]  # every evaluation during training saw the 8 held-out training rows
    assert metrics["data"] == {**metrics["data"], "train_examples": 56, "selection_examples": 8, "eval_examples": 16}
    assert metrics["train"]["best_checkpoint_chosen_on"] == "selection split"
    assert sum(map(sum, metrics["eval"]["confusion_matrix"]["counts"])) == 16  # the eval file, scored at the end
    log = json.loads((out / "training_log.json").read_text())
    best = max(e["eval_accuracy"] for e in log if "eval_accuracy" in e)
    assert metrics["train"]["best_checkpoint_accuracy"] == pytest.approx(best)
    rebuilt = recorded_data(out)
    assert rebuilt.selection is not None and len(rebuilt.selection) == 8 and len(rebuilt.train) == 56


def test_resume_continues_from_the_checkpoint_not_from_step_0(tiny_bert, sentiment_files, tmp_path):
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
    probe = ResumeProbe()
    checkpoint = shutil.copytree(out / "checkpoints" / "checkpoint-4", tmp_path / "checkpoint-4")  # deleted on publish
    resumed = run_finetune(config, resume=True, callbacks=[probe])

    probe.assert_resumed_from(checkpoint)  # its step, its optimizer moments, its schedule
    assert probe.steps == 8  # only the remaining optimizer steps: 12 - 4
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
    done = run_script("--model.name", str(tiny_bert), "--data.train-file", str(train), "--output-dir", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no text column 'text'" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()

    done = run_script("--model.name", str(tmp_path / "missing"), "--data.train-file", str(train),
                      "--output-dir", str(out))
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr

    done = run_script("--model.name", "bert-base-uncased", "--data.train-file", str(train), "--output-dir", str(out),
                      "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "HF_HUB_OFFLINE=0" in done.stderr


def test_cli_trains_and_reports(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    out = tmp_path / "out"
    done = run_script("--model.name", str(tiny_bert), "--data.train-file", str(train), "--data.eval-file",
                      str(evaluation), "--output-dir", str(out), "--train.max-steps", "2", "--train.batch-size", "8",
                      "--lora.r", "2")
    assert done.returncode == 0, done.stderr
    assert f"model written to {out}" in done.stdout
    assert json.loads((out / "config.json").read_text())["id2label"]["1"] == "pos"
