"""run_distill: a fine-tuned teacher folder => a smaller, faster student folder with distill_metrics.json.

Reads top to bottom; each step gets only its own section of the config: the teacher and its data, the student
(`student`), the training rows (`augment`), the teacher's targets (`teacher_mode`), the objective (`loss`),
training (`train`), then measuring student against teacher and publishing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.architecture import num_layers
from distill.augment import augmented_fingerprint, with_augmentation
from distill.card import distill_card
from distill.causal_lm import run_distill_causal_lm
from distill.config import DistillConfig, LossSettings
from distill.objective import (
    TEACHER_PREFIX,
    DistillationLoss,
    DistillCollator,
    LayerPairs,
    attach_projections,
    layer_pairs,
)
from distill.student import Student, build_student
from distill.teacher_logits import cached_teacher_logits
from pipelines import artifacts
from pipelines.config import dump_yaml, to_dict
from pipelines.data import (
    LABEL,
    TEXT,
    TEXT_PAIR,
    DataSettings,
    PreparedData,
    changed_settings,
    prepare_data,
    read_record,
    recorded_data,
    tokenize,
    write_record,
)
from pipelines.environment import set_threads
from pipelines.errors import UserError
from pipelines.inference import MODEL_INPUTS, dataset_logits, latency_ms, torch_backend, window_long_rows
from pipelines.metrics import classification_metrics
from pipelines.models import is_causal_lm_folder, load_trained_classifier
from pipelines.stage import StageResult
from pipelines.training.arguments import train, training_arguments
from pipelines.training.trainer import build_trainer

log = logging.getLogger(__name__)
STAGE = "distill"
DEFAULT_MAX_LENGTH = 128


@dataclass
class Teacher:
    path: Path
    model: object
    tokenizer: object
    label_names: list[str]
    max_length: int  # the teacher's own, from its data record (else DEFAULT_MAX_LENGTH)


def load_teacher(path: str) -> Teacher:
    model, tokenizer, labels = load_trained_classifier(path, role="teacher")
    record = read_record(path)
    return Teacher(Path(path), model, tokenizer, labels, record.max_length if record else DEFAULT_MAX_LENGTH)


def distill_data(settings: DataSettings, teacher: Teacher, seed: int) -> PreparedData:
    """The data given in `settings`, or without a training file the data the teacher was trained on (its split,
    the fields set in `settings` on top); labels are always the teacher's."""
    if settings.train_file is None:
        overrides = {**changed_settings(settings), "label_names": teacher.label_names}
        return recorded_data(teacher.path, overrides)
    return prepare_data(dataclasses.replace(settings, label_names=teacher.label_names), seed=seed)


def teacher_mode(config: DistillConfig) -> str:
    """cached or online: the hidden-state and attention losses need the teacher's hidden states on every batch."""
    if config.loss.hidden_weight > 0 or config.loss.attention_weight > 0:
        if config.teacher_mode == "cached":
            log.warning("the hidden-state and attention losses need the teacher's hidden states on every batch: "
                        "the teacher runs online and no logits are cached")
        return "online"
    return config.teacher_mode


def check_student(loss: LossSettings, student: Student, teacher: Teacher) -> None:
    """Refuse, before training, losses that this student cannot learn from this teacher."""
    heads, teacher_heads = student.model.config.num_attention_heads, teacher.model.config.num_attention_heads
    if loss.attention_weight > 0 and heads != teacher_heads:
        raise UserError(f"loss.attention_weight needs a student with the teacher's {teacher_heads} attention heads "
                        f"(this one has {heads}); set loss.attention_weight to 0")
    if (loss.hidden_weight > 0 or loss.attention_weight > 0) and student.tokenizer is not teacher.tokenizer:
        raise UserError("hidden-state and attention losses need a student with the teacher's tokenizer "
                        "(student.layers or student.hidden_size), not student.model")


def with_teacher_targets(train_ds, rows, teacher: Teacher, student: Student, mode: str, cache_dir: Path,
                         fingerprint: str, max_length: int, has_pair: bool):
    """The student's training rows with what the teacher contributes: its cached logits, or (online, another
    tokenizer) the rows tokenized for it. Returns (dataset, whether logits were computed this run)."""
    shared = student.tokenizer is teacher.tokenizer
    teacher_view = train_ds if shared else tokenize(rows, teacher.tokenizer, max_length, has_pair, cache_dir,
                                                     "teacher-train", fingerprint)
    if mode == "cached":
        cached = cached_teacher_logits(teacher.model, teacher.tokenizer, teacher.path, teacher_view, cache_dir,
                                       "train", fingerprint, max_length)
        return train_ds.add_column("teacher_logits", cached.logits.tolist()), cached.computed
    if not shared:
        for column in MODEL_INPUTS:
            if column in teacher_view.column_names:
                train_ds = train_ds.add_column(TEACHER_PREFIX + column, teacher_view[column])
    return train_ds, None


def distillation_loss(loss: LossSettings, label_smoothing: float, mode: str, student: Student,
                      teacher: Teacher) -> DistillationLoss:
    """The loss term; the hidden-state loss gets projections when the student is narrower than the teacher."""
    online = mode == "online"
    pairs = layer_pairs(student.model, teacher.model, student.layer_map) if loss.hidden_weight or \
        loss.attention_weight else LayerPairs()
    if loss.hidden_weight > 0:
        attach_projections(student.model, teacher.model, pairs, student.kept_channels)
    return DistillationLoss(loss, label_smoothing, teacher.model if online else None, pairs)


def model_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def measure(student: Student, teacher: Teacher, eval_ds, teacher_eval: np.ndarray, data: PreparedData,
            max_length: int, batch_size: int) -> tuple[dict, dict]:
    """(the student's classification metrics, the teacher-vs-student figures: accuracy, agreement, latency)."""
    texts = list(data.eval[TEXT])
    pairs = list(data.eval[TEXT_PAIR]) if data.has_pair else None
    student_eval = dataset_logits(student.model, student.tokenizer, eval_ds, batch_size)
    student_eval, long = window_long_rows(student.model, student.tokenizer, texts, pairs, student_eval, max_length,
                                          batch_size)  # texts that do not fit are read over windows, as predict.py
    teacher_eval, _ = window_long_rows(teacher.model, teacher.tokenizer, texts, pairs, teacher_eval, max_length,
                                       batch_size)
    references = list(eval_ds[LABEL])
    student_metrics = classification_metrics(student_eval.argmax(-1), references, data.label_names)
    teacher_metrics = classification_metrics(teacher_eval.argmax(-1), references, data.label_names)
    latency = {name: {f"latency_b{b}_ms": latency_ms(torch_backend(model, tokenizer, max_length), texts, b)
                      for b in (1, 32)}
               for name, model, tokenizer in (("teacher", teacher.model, teacher.tokenizer),
                                              ("student", student.model, student.tokenizer))}

    def side(model, evaluated: dict) -> dict:
        return {"parameters": sum(p.numel() for p in model.parameters()), "layers": num_layers(model.config),
                "hidden_size": model.config.hidden_size, "dev_accuracy": evaluated["accuracy"],
                "dev_macro_f1": evaluated["macro_f1"]}

    figures = {
        "teacher": {"path": str(teacher.path), **side(teacher.model, teacher_metrics),
                    "size_mb": model_size_mb(teacher.path), **latency["teacher"]},
        "student": {"layer_map": student.layer_map, **side(student.model, student_metrics), **latency["student"]},
        "retention": student_metrics["accuracy"] / max(teacher_metrics["accuracy"], 1e-12),
        "eval_windowed": long.windowed,
        "eval_truncated": long.truncated,
        "agreement": float(np.mean(student_eval.argmax(-1) == teacher_eval.argmax(-1))),
        "speedup_b1": latency["teacher"]["latency_b1_ms"] / latency["student"]["latency_b1_ms"],
        "speedup_b32": latency["teacher"]["latency_b32_ms"] / latency["student"]["latency_b32_ms"],
    }
    return student_metrics, figures


def run_distill(config: DistillConfig, *, resume: bool = False, overwrite: bool = False,
                callbacks: list | None = None) -> StageResult:
    """Distill config.teacher into a student and publish it, with distill_metrics.json, in config.output_dir
    (a causal language model teacher: token-level distillation, distill.causal_lm)."""
    if is_causal_lm_folder(config.teacher):
        return run_distill_causal_lm(config, resume=resume, overwrite=overwrite, callbacks=callbacks)
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    teacher = load_teacher(config.teacher)
    data = distill_data(config.data, teacher, config.train.seed)
    mode = teacher_mode(config)
    max_length = config.student.max_length or teacher.max_length
    from transformers import set_seed

    set_seed(config.train.seed)  # fresh students are initialised at random
    student = build_student(dataclasses.replace(config.student, max_length=max_length), teacher.model,
                            teacher.tokenizer, teacher.label_names, data, config.train.seed)
    check_student(config.loss, student, teacher)
    settings = to_dict(config)
    artifacts.check_output_dir(output_dir, resume, overwrite, STAGE, settings)  # every rank, before DDP
    set_threads(config.train.num_threads)
    checkpoint_dir = output_dir / artifacts.CHECKPOINTS
    args = training_arguments(config.train, checkpoint_dir)  # starts the process group under torchrun
    cache_dir = Path(config.cache_dir) if config.cache_dir else output_dir / artifacts.CACHE
    with args.main_process_first(desc="output folder, tokenization and teacher logits"):
        if args.process_index == 0:
            artifacts.prepare_output_dir(output_dir, resume, overwrite, STAGE, settings)
        rows = with_augmentation(data.train, config.augment, config.train.seed,
                                 getattr(teacher.tokenizer, "mask_token", None))
        fingerprint = augmented_fingerprint(data.fingerprint, config.augment)
        train_ds = tokenize(rows, student.tokenizer, max_length, data.has_pair, cache_dir, "student-train",
                            fingerprint)
        eval_ds = tokenize(data.eval, student.tokenizer, max_length, data.has_pair, cache_dir, "student-eval",
                           data.fingerprint)
        selection_ds = tokenize(data.selection, student.tokenizer, max_length, data.has_pair, cache_dir,
                                "student-selection", data.fingerprint) if data.selection is not None else None
        train_ds, computed = with_teacher_targets(train_ds, rows, teacher, student, mode, cache_dir, fingerprint,
                                                  max_length, data.has_pair)
    prepared = time.perf_counter()

    loss_term = distillation_loss(config.loss, config.train.label_smoothing, mode, student, teacher)
    # The attention loss needs the maps, which only eager attention returns; the models go back to their own
    # implementation (sdpa by default) after training, so latency is measured as the student will be served.
    implementations = [(m, m.config._attn_implementation) for m in (teacher.model, student.model)]
    if config.loss.attention_weight > 0:
        teacher.model.config._attn_implementation = student.model.config._attn_implementation = "eager"
    set_seed(config.train.seed)
    trainer = build_trainer(student.model, args, config.train, train_ds, selection_ds or eval_ds, student.tokenizer,
                            collator=DistillCollator(student.tokenizer,
                                                     None if student.tokenizer is teacher.tokenizer
                                                     else teacher.tokenizer),
                            loss_term=loss_term, callbacks=callbacks)
    train_output = train(trainer, checkpoint_dir, resume)
    trained = time.perf_counter()
    if not trainer.is_world_process_zero():
        return StageResult(STAGE, output_dir, {}, trained - started)

    for model, implementation in implementations:
        model.config._attn_implementation = implementation
    student.model = trainer.model
    if hasattr(student.model, "distill_projections"):
        del student.model.distill_projections
    student.model.config.pad_token_id = student.tokenizer.pad_token_id
    teacher_eval_view = eval_ds if student.tokenizer is teacher.tokenizer else tokenize(
        data.eval, teacher.tokenizer, max_length, data.has_pair, cache_dir, "teacher-eval", data.fingerprint)
    teacher_eval = cached_teacher_logits(teacher.model, teacher.tokenizer, teacher.path, teacher_eval_view, cache_dir,
                                         "eval", data.fingerprint, max_length).logits
    student_metrics, figures = measure(student, teacher, eval_ds, teacher_eval, data, max_length,
                                       config.train.eval_batch_size)
    figures["student"]["kind"] = config.student.kind()
    figures["teacher_logits"] = {"mode": mode, "computed_this_run": computed}
    figures["train"] = {
        "train_runtime": train_output.metrics.get("train_runtime"),
        "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
        "train_examples": len(train_ds),
        "augmented_examples": len(train_ds) - len(data.train),
        "global_step": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_checkpoint_chosen_on": "selection split" if data.selection is not None else "eval data",
        "best_checkpoint_accuracy": trainer.state.best_metric,
    }
    metrics = {"eval": student_metrics, "data": {
        "train_examples": len(data.train), "eval_examples": len(data.eval),
        "selection_examples": len(data.selection) if data.selection is not None else None,
        "label_names": data.label_names, "notes": data.notes}}
    with artifacts.publishing(output_dir, STAGE, settings, data.fingerprint, started,
                              {"prepare": prepared - started, "train": trained - prepared}) as staging:
        student.model.save_pretrained(staging, safe_serialization=True)
        student.tokenizer.save_pretrained(staging)
        figures["student"]["size_mb"] = model_size_mb(staging)
        artifacts.write_json(staging / "metrics.json", metrics)
        artifacts.write_json(staging / "distill_metrics.json", figures)
        artifacts.write_json(staging / "training_log.json", trainer.state.log_history)
        artifacts.write_text(staging / "config.yaml", dump_yaml(config))
        write_record(staging, data, max_length)
        artifacts.write_text(staging / "README.md", distill_card(config, metrics, figures))
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info("distill metrics: %s", json.dumps({k: figures[k] for k in ("retention", "agreement", "speedup_b32")}))
    return StageResult(STAGE, output_dir, figures, time.perf_counter() - started)
