"""The explainers' prediction function over a classifier: texts in, class probabilities out.

A thin adapter over `pipelines.inference` (its batching, padding, precision and row order), adding what
explainers need: texts deduplicated (maskers ask for the same text many times) and sentence pairs, which
arrive joined with PAIR_SEPARATOR, split back into (text, text_pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.inference import batched_logits, row_logits, softmax, torch_backend, use_bf16

PAIR_SEPARATOR = " [PAIR] "


@dataclass
class Predictor:
    """Callable f(texts) -> probabilities [n, classes] for shap, LIME and the faithfulness metrics."""

    model: object
    tokenizer: object
    batch_size: int = 256
    max_length: int = 128
    pairs: bool = False
    precision: str = "fp32"  # "fp32", "bf16" (autocast) or "auto" (bf16 where the CPU has native bf16)
    stride: int | None = None  # texts longer than max_length: windows overlapping this many tokens (None: cut)
    calls: int = field(default=0, init=False)
    rows: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.backend = torch_backend(self.model, self.tokenizer, self.max_length, bf16=use_bf16(self.precision),
                                     stride=self.stride)
        self.label_names = self.backend.label_names

    def __call__(self, texts) -> np.ndarray:
        texts = [str(t) for t in (texts.tolist() if hasattr(texts, "tolist") else texts)]
        self.calls += 1
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        unique = unique.tolist()
        self.rows += len(unique)
        if not unique:
            return np.zeros((0, len(self.label_names)))
        if self.pairs:
            split = [t.split(PAIR_SEPARATOR.strip(), 1) if PAIR_SEPARATOR.strip() in t else [t, ""] for t in unique]
            encoded = self.backend.encode([s[0].strip() for s in split], [s[1].strip() for s in split])
        else:
            encoded = self.backend.encode(unique)
        probabilities = softmax(row_logits(encoded, batched_logits(self.backend, encoded, self.batch_size)))
        return probabilities[np.asarray(inverse).reshape(-1)]


def join_pair(text: str, pair: str | None) -> str:
    return text if pair is None else f"{text}{PAIR_SEPARATOR}{pair}"
