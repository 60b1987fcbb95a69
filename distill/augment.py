"""Augmentation for distillation: copies of training texts with words masked or dropped (teacher-labelled)."""

from __future__ import annotations

import random


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
