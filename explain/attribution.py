"""One explained example: its token units, per-unit scores for the predicted class, and where they came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Attribution:
    """Attributions of one text. `tokens` are the masker's units ('' for special tokens); `scores` are the
    attributions to the predicted class; `values` [tokens, classes] and `base_values` [classes] where the
    method gives all classes (SHAP)."""

    text: str
    tokens: list[str]
    scores: np.ndarray
    predicted: int
    probability: float
    label: str
    method: str
    values: np.ndarray | None = None
    base_values: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        record = {
            "text": self.text,
            "method": self.method,
            "label": self.label,
            "probability": round(float(self.probability), 6),
            "tokens": self.tokens,
            "scores": [round(float(s), 6) for s in self.scores],
            **self.extra,
        }
        if self.values is not None:
            record["values"] = np.round(self.values, 6).tolist()
            record["base_values"] = np.round(self.base_values, 6).tolist()
        return record


def unit_spans(text: str, units: list[str]) -> list[tuple[int, int] | None]:
    """Character span of each unit in text, found left to right (None for special tokens or misses)."""
    spans, cursor = [], 0
    for unit in units:
        piece = unit.strip()
        if not piece:
            spans.append(None)
            continue
        found = text.find(piece, cursor)
        if found < 0:
            found = text.lower().find(piece.lower(), cursor)
        if found < 0:
            spans.append(None)
            continue
        spans.append((found, found + len(piece)))
        cursor = found + len(piece)
    return spans


def word_scores(text: str, units: list[str], scores: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Sum unit scores into whitespace-separated words, so two tokenizations of one text can be compared."""
    words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    totals = np.zeros(len(words))
    for span, score in zip(unit_spans(text, units), scores, strict=True):
        if span is None:
            continue
        for i, (start, end, _) in enumerate(words):
            if start <= span[0] < end:
                totals[i] += score
                break
    return [w for _, _, w in words], totals
