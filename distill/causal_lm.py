"""Token-level distillation of a fine-tuned decoder into a smaller one that shares its tokenizer.

The teacher's next-token distributions at temperature T on the response tokens are computed once and cached as
its top-k log-probabilities per position (the full vocabulary per token does not fit on disk); the mass outside
the k tokens is one more outcome, the tail. The student learns soft_weight x T^2 x KL over those k + 1 outcomes
(its own probabilities read at the k tokens, the rest its tail) plus (1 - soft_weight) x the language-modelling
loss. Merging the tail can only lower a KL, so the cached loss is a lower bound of the full one; after training
the bound is measured against the full KL on eval rows, with the teacher mass the k tokens hold.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.architecture import num_layers
from distill.config import DistillConfig
from distill.student import student_from_teacher_layers, student_layer_map
from pipelines import artifacts
from pipelines.config import dump_yaml, to_dict
from pipelines.environment import set_threads
from pipelines.errors import UserError
from pipelines.lm_data import IGNORE, LM_RECORD, PROMPT, recorded_lm_data, tokenize_lm
from pipelines.lm_eval import LmCollator, generate, perplexity
from pipelines.models import load_trained_causal_lm
from pipelines.stage import StageResult
from pipelines.training.arguments import train, training_arguments
from pipelines.training.trainer import build_trainer

log = logging.getLogger(__name__)
STAGE = "distill"


@dataclass
class TopK:
    """The teacher's top-k next-token log-probabilities at every counted position, row by row (flat arrays)."""

    values: np.ndarray  # [positions, k] float16
    indices: np.ndarray  # [positions, k] int32
    offsets: np.ndarray  # [rows + 1]: row i's positions are offsets[i]:offsets[i + 1]

    def save(self, path: Path) -> None:
        np.savez(path, values=self.values, indices=self.indices, offsets=self.offsets)

    @classmethod
    def load(cls, path: Path) -> TopK:
        with np.load(path) as f:
            return cls(f["values"], f["indices"], f["offsets"])

    def nbytes(self) -> int:
        return self.values.nbytes + self.indices.nbytes + self.offsets.nbytes


def counted_positions(labels: list[int]) -> list[int]:
    """Positions t whose next token (t + 1) is learnt."""
    return [t for t in range(len(labels) - 1) if labels[t + 1] != IGNORE]


def teacher_top_k(teacher, dataset, pad_token_id: int, k: int, temperature: float, batch_size: int = 8) -> TopK:
    """The teacher's top-k log-probabilities at temperature T at every counted position of every row, in order."""
    collate = LmCollator(pad_token_id)
    values, indices, offsets = [], [], [0]
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = collate(rows)
            logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            top = torch.log_softmax(logits / temperature, -1).topk(k, dim=-1)
            for r, row in enumerate(rows):
                keep = counted_positions(row["labels"])
                values.append(top.values[r, keep].half().numpy())
                indices.append(top.indices[r, keep].int().numpy())
                offsets.append(offsets[-1] + len(keep))
    return TopK(np.concatenate(values), np.concatenate(indices), np.asarray(offsets, dtype=np.int64))


def top_k_kl(student_logits: torch.Tensor, values: torch.Tensor, indices: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T) per position over the teacher's top-k tokens plus one tail outcome (the rest of
    the vocabulary): `values` are the teacher's log-probabilities at T on `indices`, the student's come from its
    full softmax at T. [..., vocab] logits, [..., k] values and indices -> [...]."""
    teacher = values.float()
    p = teacher.exp()
    student = torch.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, indices.long())
    p_tail = (1 - p.sum(-1)).clamp(min=1e-6)
    q_tail = (1 - student.exp().sum(-1)).clamp(min=1e-6)
    return (p * (teacher - student)).sum(-1) + p_tail * (p_tail.log() - q_tail.log())


@dataclass
class TopKCollator:
    """LmCollator's batch plus the cached teacher top-k aligned with each row's counted positions."""

    pad_token_id: int
    cache: TopK

    def __call__(self, features: list[dict]) -> dict:
        batch = LmCollator(self.pad_token_id)(features)
        if "row" not in features[0]:  # evaluation rows: the model's own loss
            return batch
        width, k = batch["input_ids"].shape[1] - 1, self.cache.values.shape[1]
        values = torch.zeros((len(features), width, k))
        indices = torch.zeros((len(features), width, k), dtype=torch.long)
        for r, f in enumerate(features):
            row = int(f["row"])
            start, end = self.cache.offsets[row], self.cache.offsets[row + 1]
            keep = counted_positions(f["labels"])
            values[r, keep] = torch.from_numpy(self.cache.values[start:end].astype(np.float32))
            indices[r, keep] = torch.from_numpy(self.cache.indices[start:end].astype(np.int64))
        return {**batch, "teacher_values": values, "teacher_indices": indices}


@dataclass
class TokenDistillationLoss:
    """soft_weight x T^2 x top-k KL + (1 - soft_weight) x LM loss, averaged over the counted positions."""

    temperature: float
    soft_weight: float

    def __call__(self, model, inputs: dict):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        logits = outputs.logits[:, :-1]
        targets = inputs["labels"][:, 1:]
        counted = (targets != IGNORE).float()
        kl = top_k_kl(logits, inputs["teacher_values"], inputs["teacher_indices"], self.temperature)
        soft = (kl * counted).sum() / counted.sum().clamp(min=1) * self.temperature ** 2
        hard = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE)
        return self.soft_weight * soft + (1 - self.soft_weight) * hard, outputs, {"loss_soft": soft, "loss_hard": hard}


def approximation(teacher, student, dataset, pad_token_id: int, k: int, temperature: float, rows: int = 32) -> dict:
    """The cached loss's KL (top k + tail, fp16) against the full KL (teacher_T || student_T) on eval rows, and
    the teacher's mass at T in its top k."""
    collate = LmCollator(pad_token_id)
    full, approx, mass = [], [], []
    with torch.inference_mode():
        for i in range(min(rows, len(dataset))):
            batch = collate([dataset[i]])
            keep = torch.tensor(counted_positions(dataset[i]["labels"]))
            if not len(keep):
                continue
            t = teacher(input_ids=batch["input_ids"]).logits[0, keep].float()
            s = student(input_ids=batch["input_ids"]).logits[0, keep].float()
            pt, ls = torch.log_softmax(t / temperature, -1), torch.log_softmax(s / temperature, -1)
            full.append((pt.exp() * (pt - ls)).sum(-1))
            top = pt.topk(k, dim=-1)
            approx.append(top_k_kl(s, top.values.half(), top.indices, temperature))  # as cached (fp16)
            mass.append(top.values.exp().sum(-1))
    full_kl, top_kl = float(torch.cat(full).mean()), float(torch.cat(approx).mean())
    return {"rows": min(rows, len(dataset)), "full_kl": full_kl, "top_k_kl": top_kl,
            "relative_error": abs(top_kl - full_kl) / max(full_kl, 1e-12),
            "teacher_mass_in_top_k": float(torch.cat(mass).mean())}


def next_token_agreement(teacher, student, dataset, pad_token_id: int, batch_size: int = 8) -> float:
    """Share of counted eval positions where the student's most likely next token is the teacher's."""
    collate = LmCollator(pad_token_id)
    same = total = 0
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            counted = batch["labels"][:, 1:] != IGNORE
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            a = teacher(**inputs).logits[:, :-1].argmax(-1)
            b = student(**inputs).logits[:, :-1].argmax(-1)
            same += int(((a == b) & counted).sum())
            total += int(counted.sum())
    return same / max(total, 1)


def calibration_lm_batches(dataset, pad_token_id: int, seed: int, rows: int = 16, batch_size: int = 8) -> list[dict]:
    """A seeded sample of tokenized training rows in padded batches: what block influence is measured on."""
    sample = dataset.shuffle(seed=seed).select(range(min(rows, len(dataset))))
    collate = LmCollator(pad_token_id)
    return [collate([sample[i] for i in range(start, min(start + batch_size, len(sample)))])
            for start in range(0, len(sample), batch_size)]


def tokens_per_second(model, tokenizer, prompts: list[str], new_tokens: int) -> float:
    """Greedy generation speed: exactly `new_tokens` per prompt, one prompt at a time, after one warm-up."""
    generate(model, tokenizer, prompts[:1], 4, batch_size=1)
    model.generation_config.min_new_tokens = new_tokens
    began = time.perf_counter()
    generate(model, tokenizer, prompts, new_tokens, batch_size=1)
    seconds = time.perf_counter() - began
    model.generation_config.min_new_tokens = None
    return len(prompts) * new_tokens / seconds


def run_distill_causal_lm(config: DistillConfig, *, resume: bool = False, overwrite: bool = False,
                          callbacks: list | None = None) -> StageResult:
    """Distill the decoder in config.teacher into a student of some of its layers, on the teacher's data."""
    started = time.perf_counter()
    if config.student.kind() != "layers":
        raise UserError("a causal-LM teacher's student is cut from its own layers: set student.layers or "
                        "student.layer_map (student.model and student.hidden_size are for classifiers)")
    output_dir = Path(config.output_dir)
    teacher, tokenizer = load_trained_causal_lm(config.teacher)
    data, max_length = recorded_lm_data(config.teacher)
    settings = to_dict(config)
    artifacts.check_output_dir(output_dir, resume, overwrite, STAGE, settings)
    set_threads(config.train.num_threads)
    checkpoint_dir = output_dir / artifacts.CHECKPOINTS
    args = training_arguments(config.train, checkpoint_dir, best_metric="eval_loss")
    artifacts.prepare_output_dir(output_dir, resume, overwrite, STAGE, settings)
    cache_dir = Path(config.cache_dir) if config.cache_dir else output_dir / artifacts.CACHE
    train_ds = tokenize_lm(data.train, tokenizer, max_length, cache_dir, "train", data.fingerprint)
    eval_ds = tokenize_lm(data.eval, tokenizer, max_length, cache_dir, "eval", data.fingerprint)
    k = config.loss.top_k
    key = artifacts.config_hash([str(config.teacher), data.fingerprint, config.loss.temperature])
    cache_file = cache_dir / f"teacher-top{k}-{key}.npz"
    began = time.perf_counter()
    if cache_file.is_file():
        cache, computed = TopK.load(cache_file), False
    else:
        cache = teacher_top_k(teacher, train_ds, tokenizer.pad_token_id, k, config.loss.temperature,
                              config.train.eval_batch_size)
        computed = True
        cache.save(cache_file)
    cache_seconds = time.perf_counter() - began

    layer_map, influence = student_layer_map(
        config.student, teacher, lambda: calibration_lm_batches(train_ds, tokenizer.pad_token_id, config.train.seed),
        decoder=True)
    student = student_from_teacher_layers(teacher, layer_map)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    perplexity_before = perplexity(student, eval_ds, tokenizer.pad_token_id)["perplexity"]  # as cut, untrained
    trainer = build_trainer(student, args, config.train, train_ds.add_column("row", list(range(len(train_ds)))),
                            eval_ds, tokenizer,
                            collator=TopKCollator(tokenizer.pad_token_id, cache),
                            loss_term=TokenDistillationLoss(config.loss.temperature, config.loss.soft_weight),
                            compute_metrics=lambda _: {}, callbacks=callbacks)
    train_output = train(trainer, checkpoint_dir, resume)
    trained = time.perf_counter()
    student = trainer.model.eval()
    prompts = [p for p in data.eval[PROMPT] if p][:8] or ["The"]
    metrics = {
        "task": "causal-lm",
        "teacher": {"path": str(config.teacher), "layers": num_layers(teacher.config),
                    "perplexity": perplexity(teacher, eval_ds, tokenizer.pad_token_id)["perplexity"],
                    "tokens_per_second": tokens_per_second(teacher, tokenizer, prompts, 32)},
        "student": {"layers": len(layer_map), "layer_map": layer_map, "teacher_layer_influence": influence,
                    "perplexity_before": perplexity_before,
                    "perplexity": perplexity(student, eval_ds, tokenizer.pad_token_id)["perplexity"],
                    "tokens_per_second": tokens_per_second(student, tokenizer, prompts, 32)},
        "next_token_agreement": next_token_agreement(teacher, student, eval_ds, tokenizer.pad_token_id),
        "top_k_cache": {"k": k, "bytes": cache.nbytes(), "positions": int(len(cache.values)),
                        "computed_this_run": computed, "seconds": cache_seconds,
                        **approximation(teacher, student, eval_ds, tokenizer.pad_token_id, k, config.loss.temperature)},
        "train": {"train_runtime": train_output.metrics.get("train_runtime"), "global_step": trainer.state.global_step,
                  "train_loss": train_output.metrics.get("train_loss")},
        "timings": {"train": trained - began},
    }
    metrics["speedup"] = metrics["student"]["tokens_per_second"] / metrics["teacher"]["tokens_per_second"]
    metrics["perplexity_ratio"] = metrics["student"]["perplexity"] / metrics["teacher"]["perplexity"]
    with artifacts.publishing(output_dir, STAGE, settings, data.fingerprint, started) as staging:
        student.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        artifacts.write_json(staging / "metrics.json", metrics)
        artifacts.write_json(staging / "training_log.json", trainer.state.log_history)
        artifacts.write_text(staging / "config.yaml", dump_yaml(config))
        shutil.copy(Path(config.teacher) / LM_RECORD, staging / LM_RECORD)  # the student's data is the teacher's
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return StageResult(STAGE, output_dir, metrics, time.perf_counter() - started)
