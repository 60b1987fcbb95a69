"""Teacher logits computed once over a split and cached on disk, keyed by the teacher's weights and the data."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.artifacts import atomic_file, file_digest
from pipelines.inference import dataset_logits

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


def cached_teacher_logits(model, tokenizer, teacher_dir: Path, tokenized, cache_dir: Path, split: str,
                          data_fingerprint: str, max_length: int, batch_size: int = 256) -> TeacherLogits:
    """The teacher's logits for every row of `tokenized` (rows tokenized with the teacher's tokenizer), read from
    cache_dir when a previous run computed them for the same teacher weights, data and settings."""
    key = hashlib.sha256(
        f"{teacher_identity(teacher_dir)}|{data_fingerprint}|{split}|{max_length}|{len(tokenized)}".encode()
    ).hexdigest()[:16]
    cache_file = cache_dir / f"teacher-logits-{split}-{key}.npy"
    if cache_file.is_file():
        log.info("teacher logits for %s read from %s", split, cache_file)
        return TeacherLogits(np.load(cache_file), cache_file, computed=False)
    logits = dataset_logits(model, tokenizer, tokenized, batch_size, progress=f"teacher logits ({split})")
    with atomic_file(cache_file) as tmp, open(tmp, "wb") as handle:
        np.save(handle, logits)
    return TeacherLogits(logits, cache_file, computed=True)
