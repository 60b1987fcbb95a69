"""Texts longer than the model's window: overlapping, word-aligned windows that each fit, and one prediction.

A text that fits is one window (the text itself). A longer one is cut at whitespace into windows of at most
`max_length` tokens (special tokens included); consecutive windows share whole words worth at most `stride`
tokens. The text's class probabilities are the mean of its windows' probabilities, so an attribution of each
window's probability, divided by the number of windows and summed over the windows a word is in, is an
attribution of the text's probability (the explain stage stitches explanations this way).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"\S+")
LONG_TEXTS = ("window", "truncate")


@dataclass(frozen=True)
class Windowing:
    """How texts longer than `max_length` tokens are read: over windows overlapping by `stride` tokens
    (default: a quarter of max_length), or truncated to their first `max_length` tokens."""

    max_length: int = 128
    stride: int | None = None
    long_texts: str = "window"

    def __post_init__(self) -> None:
        from pipelines.errors import UserError

        if self.long_texts not in LONG_TEXTS:
            raise UserError(f"long_texts must be {' or '.join(LONG_TEXTS)}, got '{self.long_texts}'")
        if self.max_length < 1:
            raise UserError(f"max_length must be a positive number, got {self.max_length}")
        if self.stride is None:
            object.__setattr__(self, "stride", self.max_length // 4)
        if not 0 <= self.stride <= self.max_length // 2:
            raise UserError(f"stride must be between 0 and half of max_length ({self.max_length // 2}) tokens, "
                            f"got {self.stride}")


def word_token_counts(tokenizer, text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """The text's whitespace words (character spans) and how many tokens each gets from the tokenizer."""
    words = [(m.start(), m.end()) for m in WORD.finditer(text)]
    counts = [0] * len(words)
    if not words:
        return words, counts
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoded["offset_mapping"]
        starts = [start for start, _ in words]
        for start, end in offsets:
            if end <= start:
                continue
            w = max(bisect.bisect_right(starts, start) - 1, 0)
            if start >= words[w][1] and w + 1 < len(words):  # a token on the whitespace before a word
                w += 1
            counts[w] += 1
    else:
        counts = [len(tokenizer.tokenize(text[s:e])) for s, e in words]
    return words, counts


def word_windows(tokenizer, text: str, max_length: int, stride: int) -> list[tuple[int, int]]:
    """Character spans of the windows a text is read over: [(0, len(text))] when it fits."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    words, counts = word_token_counts(tokenizer, text)
    if sum(counts) <= budget or not words:
        return [(0, len(text))]
    spans, start = [], 0
    while True:
        end, total = start, 0
        while end < len(words) and total + counts[end] <= budget:
            total += counts[end]
            end += 1
        end = max(end, start + 1)  # a single word longer than the window: it is truncated
        spans.append((words[start][0], words[end - 1][1]))
        if end >= len(words):
            return spans
        following, overlap = end, 0
        while following - 1 > start and overlap + counts[following - 1] <= stride:
            overlap += counts[following - 1]
            following -= 1
        start = following


def mean_probabilities(window_probabilities: np.ndarray, owners: np.ndarray, rows: int) -> np.ndarray:
    """Each row's probabilities: the mean over the windows it owns."""
    totals = np.zeros((rows, window_probabilities.shape[1]), dtype=np.float64)
    np.add.at(totals, owners, window_probabilities)
    return totals / np.bincount(owners, minlength=rows)[:, None]


def backend_stride(max_length: int, stride: int | None, long_texts: str) -> int | None:
    """The stride a backend reads long texts with, checked: None when they are truncated."""
    windowing = Windowing(max_length, stride, long_texts)
    return windowing.stride if windowing.long_texts == "window" else None
