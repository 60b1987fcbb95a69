"""run_finetune: fine-tune config.model on config.data into a plain-transformers classifier folder.

Reads top to bottom: check the model, data and output folder (before any writing), tokenize (cached in the
output folder), build the model with LoRA, train through the project's Trainer (resumable), then publish the
merged model, its adapter, metrics, data record and model card atomically.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from finetune.card import finetune_card
from finetune.causal_lm import run_causal_lm
from finetune.config import FinetuneConfig
from finetune.lora import add_lora, loraplus_optimizer
from pipelines import artifacts
from pipelines.config import dump_yaml, to_dict
from pipelines.data import LABEL, TEXT, TEXT_PAIR, PreparedData, prepare_data, tokenize, write_record
from pipelines.environment import set_threads
from pipelines.inference import dataset_logits, window_long_rows
from pipelines.metrics import classification_metrics
from pipelines.models import load_classifier, load_tokenizer, resolve_model
from pipelines.stage import StageResult
from pipelines.training.arguments import train, training_arguments
from pipelines.training.trainer import build_trainer

log = logging.getLogger(__name__)
STAGE = "finetune"


def run_finetune(config: FinetuneConfig, *, resume: bool = False, overwrite: bool = False,
                 callbacks: list | None = None) -> StageResult:
    """Fine-tune and publish the classifier (or, with task causal-lm, the decoder) in config.output_dir;
    `callbacks`: extra TrainerCallbacks."""
    if config.task == "causal-lm":
        return run_causal_lm(config, resume=resume, overwrite=overwrite, callbacks=callbacks)
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    source = resolve_model(config.model.name)  # fail fast: model and data are checked before any writing
    tokenizer = load_tokenizer(source, config.model.trust_remote_code)
    data = prepare_data(config.data, seed=config.train.seed)
    settings = to_dict(config)
    artifacts.check_output_dir(output_dir, resume, overwrite, STAGE, settings)  # every rank, before DDP
    set_threads(config.train.num_threads)
    checkpoint_dir = output_dir / artifacts.CHECKPOINTS
    args = training_arguments(config.train, checkpoint_dir)  # starts the process group under torchrun

    with args.main_process_first(desc="output folder and tokenization"):  # rank 0 writes, the others read
        if args.process_index == 0:
            artifacts.prepare_output_dir(output_dir, resume, overwrite, STAGE, settings)
        cache_dir = output_dir / artifacts.CACHE
        train_ds = tokenize(data.train, tokenizer, config.model.max_length, data.has_pair, cache_dir, "train",
                            data.fingerprint)
        eval_ds = tokenize(data.eval, tokenizer, config.model.max_length, data.has_pair, cache_dir, "eval",
                           data.fingerprint)
        selection_ds = tokenize(data.selection, tokenizer, config.model.max_length, data.has_pair, cache_dir,
                                "selection", data.fingerprint) if data.selection is not None else None
    prepared = time.perf_counter()

    from transformers import set_seed

    set_seed(config.train.seed)
    model = load_classifier(source, data.label_names, tokenizer, config.model.trust_remote_code)
    if config.lora.method == "lora":
        model = add_lora(model, config.lora)
    # checkpoints are chosen on the selection split when there is one, and the eval data is then scored once
    optimizer = loraplus_optimizer(model, config.lora, config.train.learning_rate, config.train.weight_decay)
    trainer = build_trainer(model, args, config.train, train_ds, selection_ds or eval_ds, tokenizer,
                            callbacks=callbacks, optimizer=optimizer)
    train_output = train(trainer, checkpoint_dir, resume)
    trained = time.perf_counter()
    if not trainer.is_world_process_zero():
        return StageResult(STAGE, output_dir, {}, trained - started)

    metrics = publish_classifier(trainer, tokenizer, data, eval_ds, config, train_output,
                                 timings={"prepare": prepared - started, "train": trained - prepared},
                                 started=started)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the best checkpoint is the published model
    return StageResult(STAGE, output_dir, metrics, time.perf_counter() - started)


def publish_classifier(trainer, tokenizer, data: PreparedData, eval_ds, config: FinetuneConfig, train_output,
                       timings: dict, started: float) -> dict:
    """Merge LoRA into the model, evaluate it in row order, and publish model, adapter and reports atomically."""
    model = trainer.model
    trained_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with artifacts.publishing(Path(config.output_dir), STAGE, to_dict(config), data.fingerprint, started,
                              timings) as staging:
        if config.lora.method == "lora":
            model.save_pretrained(staging / "adapter", safe_serialization=True)
            artifacts.write_json(staging / "adapter" / "label_names.json", data.label_names)
            model = model.merge_and_unload()
        model.config.pad_token_id = tokenizer.pad_token_id
        logits = dataset_logits(model, tokenizer, eval_ds, config.train.eval_batch_size)
        logits, long = window_long_rows(model, tokenizer, list(data.eval[TEXT]),
                                        list(data.eval[TEXT_PAIR]) if data.has_pair else None, logits,
                                        config.model.max_length, config.train.eval_batch_size)
        evaluated = classification_metrics(logits.argmax(-1), list(eval_ds[LABEL]), data.label_names)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        metrics = {
            "eval": evaluated,
            "train": {
                "train_runtime": train_output.metrics.get("train_runtime"),
                "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
                "train_loss": train_output.metrics.get("train_loss"),
                "global_step": trainer.state.global_step,
                "epochs": trainer.state.epoch,
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "best_checkpoint_chosen_on": "selection split" if data.selection is not None else "eval data",
                "best_checkpoint_accuracy": trainer.state.best_metric,
            },
            "data": {
                "train_examples": len(data.train),
                "eval_examples": len(data.eval),
                "selection_examples": len(data.selection) if data.selection is not None else None,
                "eval_windowed": long.windowed,
                "eval_truncated": long.truncated,
                "label_names": data.label_names,
                "notes": data.notes,
            },
            "parameters": {
                "total": sum(p.numel() for p in model.parameters()),
                "trained": trained_parameters,
            },
        }
        artifacts.write_json(staging / "metrics.json", metrics)
        artifacts.write_json(staging / "training_log.json", trainer.state.log_history)
        artifacts.write_text(staging / "config.yaml", dump_yaml(config))
        write_record(staging, data, config.model.max_length)
        artifacts.write_text(staging / "README.md", finetune_card(config, metrics))
    return metrics
