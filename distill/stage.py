"""The distillation stage: a fine-tuned teacher folder => a smaller, faster student folder + distill_metrics.json."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from distill.augment import augment_rows
from distill.config import DistillConfig
from distill.pruning import pruned_student, supports_width_pruning
from distill.student import (
    evenly_spaced,
    fresh_student,
    group_tops,
    head_width,
    num_layers,
    student_from_teacher_layers,
)
from distill.teacher_logits import cached_teacher_logits, ensemble_logits
from distill.trainer import TEACHER_PREFIX, DistillCollator, DistillTrainer, LayerPairs
from pipelines import artifacts
from pipelines.averaging import with_weight_average
from pipelines.backends import latency_ms, torch_backend
from pipelines.config import dump_yaml, to_dict
from pipelines.data import LABEL, TEXT, TEXT_PAIR, prepare_data, tokenize
from pipelines.dropout import use_fast_dropout
from pipelines.errors import UserError
from pipelines.evaluation import predict_logits
from pipelines.finetune import CHECKPOINTS, last_checkpoint, set_threads, training_arguments
from pipelines.layer_decay import layer_decay_optimizer
from pipelines.metrics import classification_metrics, trainer_metrics
from pipelines.model_card import distill_card
from pipelines.models import load_classifier, load_tokenizer, load_trained_classifier, resolve_model

log = logging.getLogger(__name__)


@dataclass
class DistillResult:
    output_dir: Path
    metrics: dict
    wall_seconds: float


@dataclass
class Teacher:
    path: Path
    model: object
    tokenizer: object


def load_extra_teachers(teacher: str, paths: list[str], label_names: list[str]) -> list[Teacher]:
    """The ensemble's other members, each refused unless its labels are the teacher's, in the same order."""
    folders = [Path(p).resolve() for p in (teacher, *paths)]
    if len(set(folders)) < len(folders):
        raise UserError(f"distill.extra_teachers lists a teacher twice: {', '.join([teacher, *paths])}")
    members = []
    for path in paths:
        model, tokenizer, labels = load_trained_classifier(path, role="extra teacher")
        if labels != label_names:
            raise UserError(f"extra teacher {path} has labels {', '.join(labels)}; the teacher has "
                            f"{', '.join(label_names)} (the same names in the same order are needed)")
        members.append(Teacher(Path(path), model, tokenizer))
    return members


@dataclass
class Student:
    model: object
    tokenizer: object
    layer_map: list[int] | None = None  # teacher layers the student's blocks come from
    kept_channels: object = None  # teacher hidden channels a width-pruned student kept


def calibration_batches(rows, tokenizer, max_length: int, has_pair: bool, seed: int, size: int = 512,
                        batch_size: int = 64) -> list[dict]:
    """A seeded sample of training rows, tokenized for the teacher, in batches of similar length."""
    sample = rows.shuffle(seed=seed).select(range(min(size, len(rows))))
    texts = list(sample[TEXT])
    pairs = list(sample[TEXT_PAIR]) if has_pair else None
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batches.append(dict(tokenizer([texts[i] for i in chunk], [pairs[i] for i in chunk] if pairs else None,
                                      padding=True, truncation=True, max_length=max_length, return_tensors="pt")))
    return batches


def build_student(config: DistillConfig, teacher, teacher_tokenizer, label_names: list[str], data) -> Student:
    """The configured kind of student; `data` (prepared train/eval) calibrates width pruning."""
    settings = config.student
    kind = settings.kind()
    if kind == "layers":
        layer_map = settings.layer_map or group_tops(num_layers(teacher.config), settings.layers)
        return Student(student_from_teacher_layers(teacher, layer_map), teacher_tokenizer, layer_map)
    if kind == "fresh":
        width = settings.hidden_size
        intermediate = settings.intermediate_size or 4 * width
        heads = settings.num_attention_heads or max(1, width // head_width(teacher.config))
        if settings.init == "prune" and not supports_width_pruning(teacher):
            log.warning("width pruning knows BERT-style encoders only: the %s student starts from PCA-reduced "
                        "embeddings and random blocks (student.init: pca)", teacher.config.model_type)
        elif settings.init == "prune":
            layer_map = evenly_spaced(num_layers(teacher.config), settings.num_hidden_layers)
            batches = calibration_batches(data.train, teacher_tokenizer, settings.max_length, data.has_pair,
                                          config.train.seed)
            model, channels = pruned_student(teacher, width, heads, intermediate, layer_map, batches)
            return Student(model, teacher_tokenizer, layer_map, channels)
        return Student(fresh_student(teacher, width, settings.num_hidden_layers, heads, intermediate),
                       teacher_tokenizer)
    source = resolve_model(settings.model)
    tokenizer = load_tokenizer(source)
    return Student(load_classifier(source, label_names, tokenizer), tokenizer)


def layer_pairs(student, teacher, layer_map: list[int] | None) -> LayerPairs:
    """Student hidden_states index -> teacher hidden_states index (0 = embeddings, i + 1 = after layer i)."""
    student_layers = num_layers(student.config)
    teacher_targets = layer_map or evenly_spaced(num_layers(teacher.config), student_layers)
    return LayerPairs(student=list(range(1, student_layers + 1)), teacher=[t + 1 for t in teacher_targets])


def attach_projections(student, teacher, pairs: LayerPairs, kept_channels=None) -> None:
    """Learned linear maps from the student's width to the teacher's, where they differ (hidden-state loss).

    For a width-pruned student they start by putting each kept channel back in its teacher position.
    """
    import torch

    d_s, d_t = student.config.hidden_size, teacher.config.hidden_size
    if d_s == d_t:
        return
    student.distill_projections = torch.nn.ModuleList(torch.nn.Linear(d_s, d_t) for _ in pairs.student)
    if kept_channels is not None:
        with torch.no_grad():
            for projection in student.distill_projections:
                projection.weight.zero_()
                projection.bias.zero_()
                projection.weight[kept_channels, torch.arange(d_s)] = 1.0


def _with_augmentation(train, config: DistillConfig, mask_token: str | None):
    """Train rows plus teacher-labelled perturbed copies (label -100: soft loss only)."""
    import datasets

    train = train.cast_column(LABEL, datasets.Value("int64"))
    copies = config.distill.augment_copies
    if not copies:
        return train
    has_pair = TEXT_PAIR in train.column_names
    texts, pairs = augment_rows(list(train[TEXT]), list(train[TEXT_PAIR]) if has_pair else None, copies,
                                config.distill.augment_prob, config.train.seed, mask_token,
                                config.distill.augment_min_words)
    extra = {TEXT: texts, LABEL: [-100] * len(texts)}
    if has_pair:
        extra[TEXT_PAIR] = pairs
    return datasets.concatenate_datasets([train, datasets.Dataset.from_dict(extra, features=train.features)])


def model_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def run_distill(config: DistillConfig, resume: bool = False, overwrite: bool = False,
                callbacks: list | None = None) -> DistillResult:
    """Distill config.distill.teacher into a student and write it, with distill_metrics.json, to output_dir."""
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    teacher, teacher_tokenizer, label_names = load_trained_classifier(config.distill.teacher, role="teacher")
    online_needed = config.loss.hidden_weight > 0 or config.loss.attention_weight > 0
    if config.distill.extra_teachers and (online_needed or config.distill.teacher_mode == "online"):
        raise UserError("distill.extra_teachers needs distill.teacher_mode cached and no hidden-state or attention "
                        "loss (an ensemble teaches through its averaged logits only)")
    members = [Teacher(Path(config.distill.teacher), teacher, teacher_tokenizer),
               *load_extra_teachers(config.distill.teacher, config.distill.extra_teachers, label_names)]
    data_settings = replace(config.data, label_names=label_names)
    data = prepare_data(data_settings, seed=config.train.seed)
    from transformers import set_seed

    set_seed(config.train.seed)  # fresh students are initialised at random
    built = build_student(config, teacher, teacher_tokenizer, label_names, data)
    student, tokenizer, layer_map = built.model, built.tokenizer, built.layer_map
    same_tokenizer = tokenizer is teacher_tokenizer
    if config.loss.attention_weight > 0 and (
            student.config.num_attention_heads != teacher.config.num_attention_heads):
        raise UserError(f"loss.attention_weight needs a student with the teacher's "
                        f"{teacher.config.num_attention_heads} attention heads (this one has "
                        f"{student.config.num_attention_heads}); set loss.attention_weight to 0")
    if online_needed and not same_tokenizer:
        raise UserError("hidden-state and attention losses need a student with the teacher's tokenizer "
                        "(student.layers or student.hidden_size), not student.model")
    # The hidden-state and attention losses run the teacher on every batch; a logit cache would only add a pass.
    teacher_mode = "online" if online_needed else config.distill.teacher_mode
    if teacher_mode != config.distill.teacher_mode:
        log.warning("the hidden-state and attention losses need the teacher's hidden states on every batch: "
                    "the teacher runs online and no logits are cached")
    settings = to_dict(config)
    artifacts.check_output_dir(output_dir, resume, overwrite, "distill", settings)  # every rank, before DDP
    set_threads(config.train.num_threads)
    args = training_arguments(config.train, output_dir / CHECKPOINTS)  # starts the process group under torchrun
    cache_dir = Path(config.distill.cache_dir) if config.distill.cache_dir else output_dir / artifacts.CACHE
    max_length = config.student.max_length
    with args.main_process_first(desc="output folder, tokenization and teacher logits"):
        if args.process_index == 0:
            artifacts.prepare_output_dir(output_dir, resume, overwrite, "distill", settings)
        train_rows = _with_augmentation(data.train, config, getattr(teacher_tokenizer, "mask_token", None))
        distill_settings = config.distill  # the min-words suffix only when set: older caches stay valid
        fingerprint = f"{data.fingerprint}-aug{distill_settings.augment_copies}-{distill_settings.augment_prob}" + (
            f"-min{distill_settings.augment_min_words}" if distill_settings.augment_min_words else "")
        train_ds = tokenize(train_rows, tokenizer, max_length, data.has_pair, cache_dir, "student-train",
                            fingerprint)
        eval_ds = tokenize(data.eval, tokenizer, max_length, data.has_pair, cache_dir, "student-eval",
                           data.fingerprint)
        if teacher_mode == "cached":
            cached = [cached_teacher_logits(m.model, m.tokenizer, m.path, train_rows, data.has_pair, max_length,
                                            cache_dir, "train", fingerprint,
                                            tokenized=train_ds if m.tokenizer is tokenizer else None)
                      for m in members]
            soft_targets = ensemble_logits([c.logits for c in cached], config.loss.temperature)
            train_ds = train_ds.add_column("teacher_logits", soft_targets.tolist())
            teacher_logits_computed = any(c.computed for c in cached)
        else:
            teacher_logits_computed = None
            if not same_tokenizer:
                teacher_view = tokenize(train_rows, teacher_tokenizer, max_length, data.has_pair, cache_dir,
                                        "teacher-train", fingerprint)
                for column in ("input_ids", "attention_mask", "token_type_ids"):
                    if column in teacher_view.column_names:
                        train_ds = train_ds.add_column(TEACHER_PREFIX + column, teacher_view[column])
    prepared = time.perf_counter()

    pairs = layer_pairs(student, teacher, layer_map) if online_needed else LayerPairs()
    if config.loss.hidden_weight > 0:
        attach_projections(student, teacher, pairs, built.kept_channels)
    # The attention loss needs the maps, which only eager attention returns; the models go back to their own
    # implementation (sdpa by default) after training, so latency is measured as the student will be served.
    attention_implementations = [(model, model.config._attn_implementation) for model in (teacher, student)]
    if config.loss.attention_weight > 0:
        teacher.config._attn_implementation = student.config._attn_implementation = "eager"
    if config.train.fast_dropout:
        log.info("dropout masks drawn by numpy's SFC64 in %d student modules (train.fast_dropout)",
                 use_fast_dropout(student))
    set_seed(config.train.seed)
    trainer = DistillTrainer(
        model=student,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if config.train.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=DistillCollator(tokenizer, None if same_tokenizer else teacher_tokenizer),
        compute_metrics=trainer_metrics,
        callbacks=with_weight_average(callbacks, config.train),
        optimizers=(layer_decay_optimizer(student, args, config.train.layer_lr_decay), None),
        loss_settings=config.loss,
        teacher=teacher if teacher_mode == "online" else None,
        layer_pairs=pairs,
    )
    checkpoint = last_checkpoint(output_dir / CHECKPOINTS) if resume else None
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    trained = time.perf_counter()
    if not trainer.is_world_process_zero():
        return DistillResult(output_dir=output_dir, metrics={}, wall_seconds=trained - started)

    for model, implementation in attention_implementations:
        model.config._attn_implementation = implementation
    student = trainer.model
    if hasattr(student, "distill_projections"):
        del student.distill_projections
    student.config.pad_token_id = tokenizer.pad_token_id
    member_eval = [cached_teacher_logits(m.model, m.tokenizer, m.path, data.eval, data.has_pair, max_length,
                                         cache_dir, "eval", data.fingerprint,
                                         tokenized=eval_ds if m.tokenizer is tokenizer else None).logits
                   for m in members]
    teacher_eval = ensemble_logits(member_eval)  # an ensemble predicts by its mean probabilities
    student_eval = predict_logits(student, eval_ds, tokenizer, config.train.eval_batch_size)
    references = list(eval_ds[LABEL])
    student_metrics = classification_metrics(student_eval.argmax(-1), references, label_names)
    teacher_metrics = classification_metrics(teacher_eval.argmax(-1), references, label_names)

    staging = artifacts.staging_dir(output_dir)
    student.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    texts = list(data.eval[TEXT])
    latency = {  # an ensemble teacher costs the sum of its members
        name: {f"latency_b{b}_ms": sum(latency_ms(torch_backend(model, tok, max_length), texts, b)
                                        for model, tok in models) for b in (1, 32)}
        for name, models in (("teacher", [(m.model, m.tokenizer) for m in members]),
                             ("student", [(student, tokenizer)]))
    }
    distill_metrics = {
        "teacher": {
            "path": str(members[0].path),
            "parameters": sum(p.numel() for m in members for p in m.model.parameters()),
            "size_mb": sum(model_size_mb(m.path) for m in members),
            "layers": num_layers(teacher.config),
            "hidden_size": teacher.config.hidden_size,
            "dev_accuracy": teacher_metrics["accuracy"],
            "dev_macro_f1": teacher_metrics["macro_f1"],
            **latency["teacher"],
            **({"members": [
                {"path": str(m.path),
                 "dev_accuracy": classification_metrics(logits.argmax(-1), references, label_names)["accuracy"]}
                for m, logits in zip(members, member_eval, strict=True)]} if len(members) > 1 else {}),
        },
        "student": {
            "kind": config.student.kind(),
            "layer_map": layer_map,
            "parameters": sum(p.numel() for p in student.parameters()),
            "size_mb": model_size_mb(staging),
            "layers": num_layers(student.config),
            "hidden_size": student.config.hidden_size,
            "dev_accuracy": student_metrics["accuracy"],
            "dev_macro_f1": student_metrics["macro_f1"],
            **latency["student"],
        },
        "retention": student_metrics["accuracy"] / max(teacher_metrics["accuracy"], 1e-12),
        "agreement": float(np.mean(student_eval.argmax(-1) == teacher_eval.argmax(-1))),
        "speedup_b1": latency["teacher"]["latency_b1_ms"] / latency["student"]["latency_b1_ms"],
        "speedup_b32": latency["teacher"]["latency_b32_ms"] / latency["student"]["latency_b32_ms"],
        "teacher_logits": {"mode": teacher_mode, "computed_this_run": teacher_logits_computed},
        "train": {
            "train_runtime": train_output.metrics.get("train_runtime"),
            "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
            "train_examples": len(train_ds),
            "augmented_examples": len(train_ds) - len(data.train),
            "global_step": trainer.state.global_step,
        },
    }
    metrics = {"eval": student_metrics, "data": {"train_examples": len(data.train), "eval_examples": len(data.eval),
                                                 "label_names": label_names, "notes": data.notes}}
    timings = {"prepare": prepared - started, "train": trained - prepared, "total": time.perf_counter() - started}
    artifacts.write_json(staging / "metrics.json", metrics)
    artifacts.write_json(staging / "distill_metrics.json", distill_metrics)
    artifacts.write_json(staging / "training_log.json", trainer.state.log_history)
    artifacts.write_text(staging / "config.yaml", dump_yaml(config))
    artifacts.write_text(staging / "README.md", distill_card(config, metrics, distill_metrics))
    artifacts.write_json(staging / artifacts.MANIFEST,
                         artifacts.manifest("distill", to_dict(config), data.fingerprint, timings))
    artifacts.publish(staging, output_dir)
    shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
    log.info("distill metrics: %s", json.dumps({k: distill_metrics[k] for k in ("retention", "agreement",
                                                                               "speedup_b32")}))
    return DistillResult(output_dir=output_dir, metrics=distill_metrics, wall_seconds=time.perf_counter() - started)
