"""task causal-lm on tiny random GPT-2 and Llama decoders: the loss falls on response tokens only, the layouts
are read, held-out perplexity falls with training, generations are written before and after, and the merged
folder loads in a plain transformers text-generation pipeline."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil

import pytest

from finetune.stage import run_finetune
from pipelines.data import DataSettings
from pipelines.errors import UserError
from pipelines.lm_data import FRAME, IGNORE, prepare_lm_data, read_lm_table, tokenize_lm
from pipelines.models import ModelSource, load_tokenizer
from tests.conftest import tiny_config

PROMPTS = ["the movie was", "the plot is", "this film is", "the actors were", "it is a story"]


def rows(n: int, seed: int) -> list[dict]:
    """Each prompt's response is a fixed, learnable phrase."""
    rng = random.Random(seed)
    answers = {p: " ".join(rng.sample(["good", "great", "superb", "very", "really", "not", "boring"], 3))
               for p in PROMPTS}
    return [{"prompt": p, "response": answers[p]} for p in (PROMPTS[i % len(PROMPTS)] for i in range(n))]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def tokenizer_of(folder):
    return load_tokenizer(ModelSource(str(folder), str(folder), "local"))


@pytest.mark.parametrize("template", [None, "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
                                            "{% if add_generation_prompt %}<s>{% endif %}"])
def test_the_loss_falls_on_the_response_tokens_only(tiny_llama, tmp_path, template):
    tokenizer = tokenizer_of(tiny_llama)
    tokenizer.chat_template = template
    data = prepare_lm_data(DataSettings(train_file=str(write_jsonl(tmp_path / "d.jsonl", rows(6, 0))),
                                        validation_split=0.5), seed=0)
    tokenized = tokenize_lm(data.train, tokenizer, 64, tmp_path / "cache", "train", data.fingerprint)
    row, source = tokenized[0], data.train[0]
    prompt_text = FRAME.format(prompt=source["prompt"]) if template is None else \
        f"<s>{source['prompt']}</s><s>"
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(source["response"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert row["input_ids"] == prompt_ids + response_ids
    assert row["labels"] == [IGNORE] * len(prompt_ids) + response_ids


def test_plain_text_learns_every_token_and_alpaca_rows_are_read(tiny_gpt2, tmp_path):
    tokenizer = tokenizer_of(tiny_gpt2)
    text = tmp_path / "notes.txt"
    text.write_text("the movie was good\n\nthe plot is dull\n")
    table, layout = read_lm_table(text)
    assert layout == "text" and table["response"] == ["the movie was good", "the plot is dull"]
    tokenized = tokenize_lm(table, tokenizer, 64, tmp_path / "cache", "t", "x")
    assert tokenized[0]["labels"] == tokenized[0]["input_ids"]
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "rate it", "input": "the movie", "output": "good"},
                                                {"instruction": "say hi", "input": "", "output": "hi"}])
    table, layout = read_lm_table(alpaca)
    assert layout == "alpaca" and table["prompt"] == ["rate it\n\nthe movie", "say hi"]
    with pytest.raises(UserError, match=r"no 'prompt' and 'response' columns, no Alpaca columns"):
        read_lm_table(write_jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "a"}]))


@pytest.mark.parametrize("base, method", [("tiny_gpt2", "lora"), ("tiny_llama", "full")])
def test_fine_tuning_lowers_held_out_perplexity_and_loads_in_a_pipeline(request, tmp_path, base, method):
    from transformers import pipeline

    model = tmp_path / "base"  # a copy whose chat template uses words the tiny vocabulary has
    shutil.copytree(request.getfixturevalue(base), model)
    tokenizer = tokenizer_of(model)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer.save_pretrained(model)
    train = write_jsonl(tmp_path / "train.jsonl", rows(80, 1))
    evaluation = write_jsonl(tmp_path / "eval.jsonl", rows(10, 1))
    config = tiny_config(model, train, evaluation, tmp_path / "out", method=method, max_steps=30,
                         learning_rate=1e-2 if method == "lora" else 3e-3, eval_steps=15)
    config = dataclasses.replace(config, task="causal-lm", generation_prompts=2, max_new_tokens=4)
    result = run_finetune(config)
    evaluated = result.metrics["eval"]
    assert evaluated["perplexity"] < 0.8 * evaluated["perplexity_before"]
    samples = json.loads((tmp_path / "out" / "generations.json").read_text())
    assert [s["prompt"] for s in samples] == PROMPTS[:2] and all({"before", "after"} <= set(s) for s in samples)
    generator = pipeline("text-generation", model=str(tmp_path / "out"))
    assert isinstance(generator("the movie was", max_new_tokens=3, do_sample=False)[0]["generated_text"], str)
    assert (tmp_path / "out" / "adapter").is_dir() == (method == "lora")

    # predict.py generates for a file of prompts: batched (left padding), in order, as one prompt at a time would
    from pipelines.lm_eval import generate
    from pipelines.models import load_trained_causal_lm
    from predict.config import PredictConfig
    from predict.stage import run_predict

    prompts = [{"id": i, "text": p} for i, p in enumerate(["the plot is", "it is a story about the movie and the "
                                                             "actors", "this film is", "the movie was"])]
    run_predict(PredictConfig(model=str(tmp_path / "out"), input_file=str(write_jsonl(tmp_path / "p.jsonl", prompts)),
                              output_file=str(tmp_path / "g.jsonl"), batch_size=3, max_new_tokens=4))
    written = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    model, tokenizer = load_trained_causal_lm(str(tmp_path / "out"))
    alone = [generate(model, tokenizer, [r["text"]], 4, batch_size=1)[0] for r in prompts]
    assert [r["id"] for r in written] == [0, 1, 2, 3] and [r["generated"] for r in written] == alone
    assert sum(bool(text.strip()) for text in alone) >= 3, alone  # learnt words, not only special tokens
    from export.config import ExportConfig
    from export.stage import run_export

    with pytest.raises(UserError, match="is a causal language model: this export writes classifiers"):
        run_export(ExportConfig(model=str(tmp_path / "out"), output_dir=str(tmp_path / "onnx")))
    assert not (tmp_path / "onnx").exists()


@pytest.mark.real_model
def test_smollm2_learns_alpaca_responses(tmp_path):
    """The packaged SmolLM2-135M with LoRA, a few steps on the bundled Alpaca rows: held-out perplexity falls."""
    from finetune.config import FinetuneConfig, LoraSettings
    from pipelines.data import DataSettings
    from pipelines.models import ModelSettings
    from pipelines.training.settings import TrainSettings
    from tests.conftest import ROOT

    config = FinetuneConfig(
        task="causal-lm", output_dir=str(tmp_path / "out"), model=ModelSettings(name="smollm2", max_length=128),
        data=DataSettings(train_file=str(ROOT / "data" / "alpaca" / "alpaca_en_demo.json"), max_train_samples=48,
                          max_eval_samples=16),
        lora=LoraSettings(r=8, alpha=16, dropout=0.0),
        train=TrainSettings(max_steps=12, batch_size=4, eval_batch_size=8, learning_rate=5e-4, warmup=0,
                            eval_strategy="no", logging_steps=4),
        generation_prompts=1, max_new_tokens=8)
    evaluated = run_finetune(config).metrics["eval"]
    assert evaluated["perplexity"] < evaluated["perplexity_before"]


def test_the_pipeline_fine_tunes_and_reports_a_causal_lm(tiny_gpt2, tmp_path):
    from chain.config import PipelineConfig
    from chain.runner import run_pipeline
    from distill.config import DistillSettings, StudentSettings
    from explain.config import ExplainSettings
    from finetune.config import FinetuneSettings
    from pipelines.training.settings import TrainSettings

    base = tiny_config(tiny_gpt2, write_jsonl(tmp_path / "train.jsonl", rows(40, 2) + [
        {"prompt": "<script>alert(1)</script>", "response": "the plot"}]), None, tmp_path / "unused", max_steps=6)
    settings = FinetuneSettings(model=base.model, lora=base.lora, train=base.train, generation_prompts=3,
                                max_new_tokens=3)
    distill = DistillSettings(student=StudentSettings(layers=1), train=TrainSettings(
        max_steps=4, batch_size=8, eval_strategy="no", num_threads=1))
    config = PipelineConfig(output_dir=str(tmp_path / "run"), stages=["finetune", "distill", "explain", "report"],
                            task="causal-lm", data=dataclasses.replace(base.data, validation_split=0.25),
                            finetune=settings, distill=distill,
                            explain=ExplainSettings(num_examples=2, max_evals=20, num_threads=1))
    run_pipeline(config)
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    metrics = json.loads((tmp_path / "run" / "finetune" / "metrics.json").read_text())
    assert "Language model (task causal-lm)" in page and f"{metrics['eval']['perplexity']:.2f}" in page
    assert "<script>alert" not in page  # prompts are user text, escaped
    assert "Fine-tune → Distill → Explain." in page and 'href="#deployment"' not in page  # only what ran
    student = json.loads((tmp_path / "run" / "distill" / "metrics.json").read_text())
    assert "next-token top-1 agreement" in page and f"{student['student']['perplexity']:.2f}" in page
    assert f"{student['student']['perplexity_before']:.2f}" in page and "by block influence" in page
    explained = json.loads((tmp_path / "run" / "explain" / "explain_metrics.json").read_text())
    assert explained["task"] == "causal-lm" and len(explained["continuations"]) == 2
    assert {row["model"] for row in explained["faithfulness"]} == {"teacher", "student"} and explained["agreement"]
    assert "Teacher–student agreement" in page
    with pytest.raises(UserError, match="task causal-lm runs the stages distill, explain, finetune, report; export"):
        PipelineConfig(stages=["finetune", "export"], task="causal-lm")
