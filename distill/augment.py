"""Augmentation for distillation: copies of training texts with words masked or dropped (teacher-labelled)."""

from __future__ import annotations

import random

from distill.config import AugmentSettings
from pipelines.data import LABEL, TEXT, TEXT_PAIR


def perturb(text: str, prob: float, rng: random.Random, mask_token: str | None) -> str:
    """Each word is, with probability prob, replaced by mask_token (or dropped when there is none, or by a coin)."""
    words = text.split()
    out = []
    for word in words:
        if rng.random() < prob:
            if mask_token and rng.random() < 0.5:
                out.append(mask_token)
            continue
        out.append(word)
    if not out and words:
        out = [rng.choice(words)]
    return " ".join(out) if out else text


def augment_rows(texts: list[str], pairs: list[str] | None, copies: int, prob: float, seed: int,
                 mask_token: str | None, min_words: int = 0) -> tuple[list[str], list[str] | None]:
    """`copies` perturbed versions of every row with at least `min_words` words (text and pair together),
    deterministic for a seed; pairs (if any) perturbed too."""
    rng = random.Random(seed)
    new_texts, new_pairs = [], [] if pairs is not None else None
    for index, text in enumerate(texts):
        words = len(text.split()) + (len(pairs[index].split()) if pairs is not None else 0)
        if words < min_words:
            continue
        for _ in range(copies):
            new_texts.append(perturb(text, prob, rng, mask_token))
            if new_pairs is not None:
                new_pairs.append(perturb(pairs[index], prob, rng, mask_token))
    return new_texts, new_pairs


def with_augmentation(train, settings: AugmentSettings, seed: int, mask_token: str | None):
    """Train rows plus `settings.copies` perturbed copies of each long enough one, labelled -100 (soft loss only)."""
    import datasets

    train = train.cast_column(LABEL, datasets.Value("int64"))
    if not settings.copies:
        return train
    has_pair = TEXT_PAIR in train.column_names
    texts, pairs = augment_rows(list(train[TEXT]), list(train[TEXT_PAIR]) if has_pair else None, settings.copies,
                                settings.prob, seed, mask_token, settings.min_words)
    extra = {TEXT: texts, LABEL: [-100] * len(texts)}
    if has_pair:
        extra[TEXT_PAIR] = pairs
    return datasets.concatenate_datasets([train, datasets.Dataset.from_dict(extra, features=train.features)])


def augmented_fingerprint(data_fingerprint: str, settings: AugmentSettings) -> str:
    """The training rows' fingerprint once augmented (the min-words suffix only when set: older caches stay valid)."""
    return f"{data_fingerprint}-aug{settings.copies}-{settings.prob}" + (
        f"-min{settings.min_words}" if settings.min_words else "")
