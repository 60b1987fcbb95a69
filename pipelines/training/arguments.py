"""transformers TrainingArguments from our settings, and finding the checkpoint to resume from."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pipelines.training.settings import TrainSettings

log = logging.getLogger(__name__)


def training_arguments(train: TrainSettings, checkpoint_dir: Path, best_metric: str = "accuracy"):
    """transformers TrainingArguments from our settings (transformers 5 names). Under torchrun this starts the
    process group, so call it before any work that only rank 0 should do. The best checkpoint is the one with
    the highest `best_metric` (the lowest when it is a loss)."""
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
        metric_for_best_model=best_metric,
        greater_is_better="loss" not in best_metric,
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


def train(trainer, checkpoint_dir: Path, resume: bool):
    """Run trainer.train, from the last complete checkpoint in checkpoint_dir when resuming."""
    checkpoint = last_checkpoint(checkpoint_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("no checkpoint in %s: starting from the beginning", checkpoint_dir)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    return trainer.train(resume_from_checkpoint=checkpoint)
