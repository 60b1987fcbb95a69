"""Teacher logits computed once over the training set with Dataset.map and cached on disk."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.data import file_digest, tokenize
from pipelines.evaluation import PaddingCollator

log = logging.getLogger(__name__)


@dataclass
class TeacherLogits:
    logits: np.ndarray  # [rows, classes], in the dataset's row order
    cache_file: Path
    computed: bool  # False when read back from the cache


def teacher_identity(teacher_dir: Path) -> str:
    """A hash of the teacher's weights and config: a changed teacher never reuses old logits."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        path = teacher_dir / name
        if path.is_file():
            digest.update(file_digest(path).encode())
    return digest.hexdigest()[:16]


def _forward_batch(batch: dict, model, tokenizer) -> dict:
    import torch

    collate = PaddingCollator(tokenizer)
    features = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    inputs = collate([{k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in f}
                      for f in features])
    with torch.inference_mode():
        logits = model(**inputs).logits.float().numpy()
    return {"teacher_logits": logits.tolist()}


def cached_teacher_logits(model, tokenizer, teacher_dir: Path, texts, has_pair: bool, max_length: int,
                          cache_dir: Path, split: str, data_fingerprint: str, batch_size: int = 256,
                          tokenized=None) -> TeacherLogits:
    """Logits of the teacher for every row of `texts` (columns text[, text_pair]), cached under cache_dir.

    Rows are run length-sorted (little padding) through Dataset.map with a deterministic fingerprint
    of teacher weights + data + settings; a second call with the same inputs reads the cache file.
    `tokenized`: the same rows already tokenized with the teacher's tokenizer (a student sharing it), reused.
    """
    key = hashlib.sha256(
        f"{teacher_identity(teacher_dir)}|{data_fingerprint}|{split}|{max_length}|{len(texts)}".encode()
    ).hexdigest()[:16]
    cache_file = cache_dir / f"teacher-logits-{split}-{key}.arrow"
    computed = not cache_file.is_file()
    if tokenized is None:
        tokenized = tokenize(texts, tokenizer, max_length, has_pair, cache_dir, f"teacher-{split}", data_fingerprint)
    ordered = tokenized.add_column("row", list(range(len(tokenized)))).sort("length")
    model.eval()
    with_logits = ordered.map(
        _forward_batch,
        batched=True,
        batch_size=batch_size,
        fn_kwargs={"model": model, "tokenizer": tokenizer},
        remove_columns=[c for c in ordered.column_names if c != "row"],
        cache_file_name=str(cache_file),
        new_fingerprint=key,
        load_from_cache_file=True,
        desc=f"teacher logits ({split})",
    )
    if not computed:
        log.info("teacher logits for %s read from %s", split, cache_file)
    rows = np.asarray(with_logits["row"])
    logits = np.asarray(with_logits["teacher_logits"], dtype=np.float32)
    in_order = np.empty_like(logits)
    in_order[rows] = logits
    return TeacherLogits(logits=in_order, cache_file=cache_file, computed=computed)


def ensemble_logits(member_logits: list[np.ndarray], temperature: float = 1.0) -> np.ndarray:
    """Logits whose softmax at `temperature` is the mean of the members' softmaxes at that temperature.

    T * log(mean_k softmax(z_k / T)): the soft loss, which takes softmax(logits / T), then learns exactly the
    ensemble's averaged soft labels. One member comes back unchanged.
    """
    if len(member_logits) == 1:
        return member_logits[0]
    scaled = np.stack(member_logits).astype(np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    probabilities = np.exp(scaled) / np.exp(scaled).sum(axis=-1, keepdims=True)
    return (temperature * np.log(probabilities.mean(axis=0))).astype(np.float32)
