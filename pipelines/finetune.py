"""The fine-tuning stage: a pretrained BERT- or GPT-style model + LoRA (or full) + Trainer => a classifier folder."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines import artifacts
from pipelines.config import FinetuneConfig, TrainSettings, dump_yaml, to_dict
from pipelines.data import PreparedData, prepare_data, tokenize
from pipelines.errors import UserError
from pipelines.evaluation import PaddingCollator, predict_logits
from pipelines.layer_decay import layer_decay_optimizer
from pipelines.metrics import classification_metrics, trainer_metrics
from pipelines.model_card import finetune_card
from pipelines.models import (
    has_module,
    head_modules,
    load_classifier,
    load_tokenizer,
    lora_targets,
    pooler_modules,
    resolve_model,
)

log = logging.getLogger(__name__)
CHECKPOINTS = artifacts.CHECKPOINTS


@dataclass
class FinetuneResult:
    output_dir: Path
    metrics: dict
    wall_seconds: float


def set_threads(num_threads: int | None) -> None:
    import torch

    torch.set_num_threads(num_threads or os.cpu_count() or 1)


def add_lora(model, config: FinetuneConfig):
    """Wrap model with LoRA adapters; the classification head and lora.modules_to_save (by default a BERT-style
    pooler, which a sentence-embedding checkpoint may never have trained) learn in full and are saved with them."""
    from peft import LoraConfig, TaskType, get_peft_model

    settings = config.lora
    heads = head_modules(model)
    for wanted in settings.modules_to_save or []:
        if not has_module(model, wanted):
            raise UserError(f"lora.modules_to_save names '{wanted}', which this model does not have")
    extra = pooler_modules(model) if settings.modules_to_save is None else settings.modules_to_save
    lora_config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        use_dora=settings.use_dora,
        use_rslora=settings.use_rslora,
        target_modules=settings.target_modules or lora_targets(model),
        modules_to_save=heads + [name for name in extra if name not in heads],
        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2",
    )
    try:
        return get_peft_model(model, lora_config)
    except ValueError as err:
        raise UserError(f"LoRA could not be applied: {str(err).splitlines()[0]}; check lora.target_modules") from err


def build_optimizer(model, config: FinetuneConfig, args):
    """AdamW with LoRA+ rates (B matrices and biases at lr x ratio) or with layer-wise decayed rates
    (`train.layer_lr_decay`), or None for the Trainer's default."""
    if config.lora.method != "lora" or config.lora.loraplus_lr_ratio is None:
        return layer_decay_optimizer(model, args, config.train.layer_lr_decay)
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=config.train.learning_rate,
                                     loraplus_lr_ratio=config.lora.loraplus_lr_ratio,
                                     loraplus_weight_decay=config.train.weight_decay)


def training_arguments(train: TrainSettings, checkpoint_dir: Path):
    """transformers TrainingArguments from our settings (transformers 5 names)."""
    import torch
    from transformers import TrainingArguments

    save_strategy = train.eval_strategy if train.eval_strategy != "no" else "epoch"
    if "tensorboard" in train.report_to:  # keep the event files beside the model, not in checkpoints/
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(checkpoint_dir.parent / "tensorboard")
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        label_smoothing_factor=train.label_smoothing,
        warmup_steps=train.warmup if train.warmup < 1 else int(train.warmup),
        lr_scheduler_type=train.lr_scheduler,
        seed=train.seed,
        data_seed=train.seed,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        length_column_name="length",
        eval_strategy=train.eval_strategy,
        eval_steps=train.eval_steps,
        save_strategy=save_strategy,
        save_steps=train.eval_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=train.eval_strategy != "no",
        metric_for_best_model="accuracy",
        greater_is_better=True,
        logging_steps=train.logging_steps,
        report_to=train.report_to or "none",
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
        average_tokens_across_devices=False,  # losses are per-batch means: no scaling by the number of processes
        dataloader_num_workers=0,
        bf16=train.bf16,
        disable_tqdm=False,
    )


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest complete checkpoint; ones cut short by a kill (no trainer_state.json, which the Trainer
    writes last) are deleted so the run continues from the one before."""
    if not checkpoint_dir.is_dir():
        return None
    found = sorted((p for p in checkpoint_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]))
    for candidate in reversed(found):
        if (candidate / "trainer_state.json").is_file():
            return str(candidate)
        log.warning("dropping %s: it was not completely written (interrupted while saving)", candidate)
        shutil.rmtree(candidate, ignore_errors=True)
    return None


def run_finetune(config: FinetuneConfig, resume: bool = False, overwrite: bool = False,
                 callbacks: list | None = None) -> FinetuneResult:
    """Fine-tune config.model on config.data and write a plain-transformers classifier to config.output_dir.

    `callbacks` are extra transformers TrainerCallbacks (progress hooks, tests).
    """
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    source = resolve_model(config.model.name)  # fail fast: model and data are checked before any writing
    tokenizer = load_tokenizer(source, config.model.trust_remote_code)
    data = prepare_data(config.data, seed=config.train.seed)
    settings = to_dict(config)
    artifacts.check_output_dir(output_dir, resume, overwrite, "finetune", settings)  # every rank, before DDP
    set_threads(config.train.num_threads)
    checkpoint_dir = output_dir / CHECKPOINTS
    args = training_arguments(config.train, checkpoint_dir)  # starts the process group under torchrun

    with args.main_process_first(desc="output folder and tokenization"):  # rank 0 writes, the others read
        if args.process_index == 0:
            artifacts.prepare_output_dir(output_dir, resume, overwrite, "finetune", settings)
        cache_dir = output_dir / artifacts.CACHE
        train_ds = tokenize(data.train, tokenizer, config.model.max_length, data.has_pair, cache_dir, "train",
                            data.fingerprint)
        eval_ds = tokenize(data.eval, tokenizer, config.model.max_length, data.has_pair, cache_dir, "eval",
                           data.fingerprint)
    prepared = time.perf_counter()

    from transformers import set_seed

    from pipelines.averaging import with_weight_average
    from pipelines.sampling import LengthGroupedTrainer

    if config.adapt.epochs > 0:  # the classifier starts from the model adapted to the training texts
        from pipelines.adapt import ADAPT, adapt_language_model

        source = adapt_language_model(source, tokenizer, train_ds, config, checkpoint_dir / ADAPT, data.fingerprint,
                                      resume)
    adapted = time.perf_counter()
    set_seed(config.train.seed)
    model = load_classifier(source, data.label_names, tokenizer, config.model.trust_remote_code)
    if config.train.dropout is not None:  # before LoRA, whose dropout is lora.dropout
        from pipelines.dropout import set_dropout

        log.info("dropout %g in %d places (train.dropout)", config.train.dropout,
                 set_dropout(model, config.train.dropout))
    if config.lora.method == "lora":
        model = add_lora(model, config)
    if config.train.fast_dropout:
        from pipelines.dropout import use_fast_dropout

        log.info("dropout masks drawn by numpy's SFC64 in %d modules (train.fast_dropout)", use_fast_dropout(model))
    trainer = LengthGroupedTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if config.train.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=PaddingCollator(tokenizer),
        compute_metrics=trainer_metrics,
        callbacks=with_weight_average(callbacks, config.train),
        optimizers=(build_optimizer(model, config, args), None),
        rdrop_alpha=config.train.rdrop_alpha,
        sam_rho=config.train.sam_rho,
        sam_adaptive=config.train.sam_adaptive,
    )
    checkpoint = last_checkpoint(checkpoint_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("no checkpoint in %s: starting from the beginning", checkpoint_dir)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    trained = time.perf_counter()
    if not trainer.is_world_process_zero():
        return FinetuneResult(output_dir=output_dir, metrics={}, wall_seconds=trained - started)

    try:
        metrics = save_classifier(trainer, tokenizer, data, eval_ds, config, output_dir, train_output,
                                  timings={"prepare": prepared - started, "adapt": adapted - prepared,
                                           "train": trained - adapted},
                                  started=started)
    except OSError as err:
        raise UserError(f"saving the model to {output_dir} failed ({err.strerror or err}); nothing was published "
                        "and any previous model there is unchanged; free space and run again") from err
    return FinetuneResult(output_dir=output_dir, metrics=metrics, wall_seconds=time.perf_counter() - started)


def save_classifier(trainer, tokenizer, data: PreparedData, eval_ds, config: FinetuneConfig, output_dir: Path,
                    train_output, timings: dict, started: float) -> dict:
    """Merge LoRA into the model, evaluate it in row order, and publish model, adapter and reports atomically."""
    model = trainer.model
    trained_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    staging = artifacts.staging_dir(output_dir)
    try:
        if config.lora.method == "lora" and not config.adapt.epochs:  # else its base is the adapted model
            model.save_pretrained(staging / "adapter", safe_serialization=True)
            artifacts.write_json(staging / "adapter" / "label_names.json", data.label_names)
        if config.lora.method == "lora":
            model = model.merge_and_unload()
        model.config.pad_token_id = tokenizer.pad_token_id
        logits = predict_logits(model, eval_ds, tokenizer, config.train.eval_batch_size)
        evaluated = classification_metrics(logits.argmax(-1), list(eval_ds["label"]), data.label_names)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)

        history = trainer.state.log_history
        metrics = {
            "eval": evaluated,
            "train": {
                "train_runtime": train_output.metrics.get("train_runtime"),
                "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
                "train_loss": train_output.metrics.get("train_loss"),
                "global_step": trainer.state.global_step,
                "epochs": trainer.state.epoch,
                "best_checkpoint": trainer.state.best_model_checkpoint,
            },
            "data": {
                "train_examples": len(data.train),
                "eval_examples": len(data.eval),
                "label_names": data.label_names,
                "notes": data.notes,
            },
            "parameters": {
                "total": sum(p.numel() for p in model.parameters()),
                "trained": trained_parameters,
            },
        }
        timings = {**timings, "total": time.perf_counter() - started}
        artifacts.write_json(staging / "metrics.json", metrics)
        artifacts.write_json(staging / "training_log.json", history)
        artifacts.write_text(staging / "config.yaml", dump_yaml(config))
        artifacts.write_text(staging / "README.md", finetune_card(config, metrics))
        artifacts.write_json(staging / artifacts.MANIFEST,
                             artifacts.manifest("finetune", to_dict(config), data.fingerprint, timings))
        artifacts.publish(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after publish; a failed save leaves nothing
    shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)  # the best one is the published model
    return metrics
