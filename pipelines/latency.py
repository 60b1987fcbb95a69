"""CPU inference latency of a classifier at a fixed batch size (median over repeated batches)."""

from __future__ import annotations

import statistics
import time


def latency_ms(model, tokenizer, texts: list[str], batch_size: int, max_length: int = 128,
               batches: int = 20, warmup: int = 3) -> float:
    """Median milliseconds to classify one batch of `batch_size` texts (tokenization included).

    Batches are taken in turn from `texts` (cycled), so each batch has realistic, varied lengths.
    """
    import torch

    model.eval()
    timings = []
    with torch.inference_mode():
        for i in range(warmup + batches):
            start = (i * batch_size) % max(len(texts), 1)
            chunk = (texts[start:] + texts)[:batch_size]
            began = time.perf_counter()
            inputs = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            model(**inputs)
            if i >= warmup:
                timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)
