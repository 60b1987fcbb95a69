"""run_causal_lm: the fine-tuning stage for `task: causal-lm`, a decoder on prompt/response pairs or plain text.

Reads top to bottom like the classifier's stage: check the model, data and output folder before any writing,
tokenize (cached in the output folder; loss on the response tokens), measure held-out perplexity and sample
generations before training, train with LoRA (or in full) through the project's Trainer (resumable, the best
checkpoint chosen on eval loss), then merge and publish a folder `transformers.pipeline("text-generation")`
loads, with metrics.json, generations.json, training_log.json and the config.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from finetune.config import FinetuneConfig
from finetune.lora import add_lora, loraplus_optimizer
from pipelines import artifacts
from pipelines.config import dump_yaml, to_dict
from pipelines.environment import set_threads
from pipelines.lm_data import PROMPT, prepare_lm_data, tokenize_lm, write_lm_record
from pipelines.lm_eval import LmCollator, generate, perplexity
from pipelines.models import load_causal_lm, load_tokenizer, resolve_model
from pipelines.stage import StageResult
from pipelines.training.arguments import train, training_arguments
from pipelines.training.trainer import build_trainer

log = logging.getLogger(__name__)
STAGE = "finetune"


def run_causal_lm(config: FinetuneConfig, *, resume: bool = False, overwrite: bool = False,
                  callbacks: list | None = None) -> StageResult:
    """Fine-tune a decoder and publish it in config.output_dir; `callbacks`: extra TrainerCallbacks."""
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    source = resolve_model(config.model.name)
    tokenizer = load_tokenizer(source, config.model.trust_remote_code)
    settings = config.data
    data = prepare_lm_data(settings, config.train.seed)
    as_dict = to_dict(config)
    artifacts.check_output_dir(output_dir, resume, overwrite, STAGE, as_dict)
    set_threads(config.train.num_threads)
    checkpoint_dir = output_dir / artifacts.CHECKPOINTS
    args = training_arguments(config.train, checkpoint_dir, best_metric="eval_loss")

    with args.main_process_first(desc="output folder and tokenization"):
        if args.process_index == 0:
            artifacts.prepare_output_dir(output_dir, resume, overwrite, STAGE, as_dict)
        cache_dir = output_dir / artifacts.CACHE
        max_length = config.model.max_length
        train_ds = tokenize_lm(data.train, tokenizer, max_length, cache_dir, "train", data.fingerprint)
        eval_ds = tokenize_lm(data.eval, tokenizer, max_length, cache_dir, "eval", data.fingerprint)
    prepared = time.perf_counter()

    from transformers import set_seed

    set_seed(config.train.seed)
    model = load_causal_lm(source, tokenizer, config.model.trust_remote_code)
    prompts = [p for p in data.eval[PROMPT] if p][: config.generation_prompts]
    before = {"eval": perplexity(model, eval_ds, tokenizer.pad_token_id, config.train.eval_batch_size),
              "generations": generate(model, tokenizer, prompts, config.max_new_tokens)}
    if config.lora.method == "lora":
        model = add_lora(model, config.lora, causal_lm=True)
    optimizer = loraplus_optimizer(model, config.lora, config.train.learning_rate, config.train.weight_decay)
    trainer = build_trainer(model, args, config.train, train_ds, eval_ds, tokenizer, collator=LmCollator(
        tokenizer.pad_token_id), compute_metrics=lambda _: {}, callbacks=callbacks, optimizer=optimizer)
    train_output = train(trainer, checkpoint_dir, resume)
    trained = time.perf_counter()
    if not trainer.is_world_process_zero():
        return StageResult(STAGE, output_dir, {}, trained - started)

    with artifacts.publishing(output_dir, STAGE, as_dict, data.fingerprint, started,
                              {"prepare": prepared - started, "train": trained - prepared}) as staging:
        model = trainer.model
        trained_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if config.lora.method == "lora":
            model.save_pretrained(staging / "adapter", safe_serialization=True)
            model = model.merge_and_unload()
        after = {"eval": perplexity(model, eval_ds, tokenizer.pad_token_id, config.train.eval_batch_size),
                 "generations": generate(model, tokenizer, prompts, config.max_new_tokens)}
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        metrics = {
            "task": "causal-lm",
            "eval": {"perplexity": after["eval"]["perplexity"], "loss": after["eval"]["loss"],
                     "perplexity_before": before["eval"]["perplexity"], "tokens": after["eval"]["tokens"]},
            "train": {"train_runtime": train_output.metrics.get("train_runtime"),
                      "train_loss": train_output.metrics.get("train_loss"),
                      "global_step": trainer.state.global_step, "epochs": trainer.state.epoch,
                      "best_checkpoint": trainer.state.best_model_checkpoint},
            "data": {"layout": data.layout, "train_examples": len(train_ds), "eval_examples": len(eval_ds),
                     "files": data.files},
            "parameters": {"total": sum(p.numel() for p in model.parameters()), "trained": trained_parameters},
        }
        samples = [{"prompt": p, "before": b, "after": a}
                   for p, b, a in zip(prompts, before["generations"], after["generations"], strict=True)]
        artifacts.write_json(staging / "metrics.json", metrics)
        artifacts.write_json(staging / "generations.json", samples)
        artifacts.write_json(staging / "training_log.json", trainer.state.log_history)
        artifacts.write_text(staging / "config.yaml", dump_yaml(config))
        write_lm_record(staging, data, settings, config.train.seed, max_length)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info("held-out perplexity %.2f -> %.2f", before["eval"]["perplexity"], after["eval"]["perplexity"])
    return StageResult(STAGE, output_dir, metrics, time.perf_counter() - started)
