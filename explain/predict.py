"""A fast batched prediction function over a classifier: texts in, class probabilities out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.environment import native_bf16

PAIR_SEPARATOR = " [PAIR] "


@dataclass
class Predictor:
    """Callable f(texts) -> probabilities [n, classes] for shap, LIME and the faithfulness metrics.

    Texts are deduplicated, sorted by length and run in batches with dynamic padding under
    torch.inference_mode (no transformers pipeline in the hot path). Sentence pairs arrive joined with
    PAIR_SEPARATOR and are split back into (text, text_pair) before tokenization.
    """

    model: object
    tokenizer: object
    batch_size: int = 256
    max_length: int = 128
    pairs: bool = False
    precision: str = "fp32"  # "fp32", "bf16" (autocast) or "auto" (bf16 where the CPU has native bf16)
    calls: int = field(default=0, init=False)
    rows: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")
        self.bf16 = self.precision == "bf16" or (self.precision == "auto" and native_bf16())
        self.model.eval()
        self.label_names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def __call__(self, texts) -> np.ndarray:
        texts = [str(t) for t in (texts.tolist() if hasattr(texts, "tolist") else texts)]
        self.calls += 1
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        unique = unique.tolist()
        self.rows += len(unique)
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        probabilities = np.zeros((len(unique), len(self.label_names)), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            probabilities[index] = self._probabilities([unique[i] for i in index])
        return probabilities[np.asarray(inverse).reshape(-1)]

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        import torch

        if self.pairs:
            split = [t.split(PAIR_SEPARATOR.strip(), 1) if PAIR_SEPARATOR.strip() in t else [t, ""] for t in texts]
            first, second = [s[0].strip() for s in split], [s[1].strip() for s in split]
            inputs = self.tokenizer(first, second, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt")
        else:
            inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt")
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(**inputs).logits.float()
        return torch.softmax(logits, dim=-1).double().numpy()


def join_pair(text: str, pair: str | None) -> str:
    return text if pair is None else f"{text}{PAIR_SEPARATOR}{pair}"
