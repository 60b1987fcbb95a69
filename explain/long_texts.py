"""Explanations of texts longer than the model's window: explained window by window, stitched onto the words.

The predictor reads a long text over word-aligned windows and averages their probabilities
(`pipelines.windows`). Each window is explained for the text's predicted class; a word's attribution is the
sum, over the windows it is in, of its attribution in that window divided by the number of windows. As the
text's probability is the mean of its windows', that is an attribution of the text's probability, and with
SHAP it keeps SHAP's additivity. Texts that fit are explained as they are.
"""

from __future__ import annotations

import numpy as np

from explain.attribution import Attribution, word_scores
from explain.methods import explain
from explain.predictor import Predictor
from pipelines.windows import WORD, word_windows


def word_units(text: str) -> list[str]:
    """The text cut into its whitespace words, each with the whitespace after it ('' joins them back)."""
    starts = [m.start() for m in WORD.finditer(text)]
    if not starts:
        return [text]
    units = [text[start:end] for start, end in zip(starts, [*starts[1:], len(text)], strict=True)]
    units[0] = text[: starts[0]] + units[0]
    return units


def stitch(text: str, spans: list[tuple[int, int]], windows: list[Attribution], probabilities: np.ndarray,
           label_names: list[str], method: str) -> Attribution:
    """One attribution over the whole text's words from its windows' (each explained for the same class)."""
    first_word = {m.start(): k for k, m in enumerate(WORD.finditer(text))}
    units = word_units(text)
    scores = np.zeros(len(units))
    for (start, _), window in zip(spans, windows, strict=True):
        _, per_word = word_scores(window.text, window.tokens, window.scores)
        k = first_word[start]
        scores[k : k + len(per_word)] += per_word / len(spans)
    target = windows[0].predicted
    extra = {"windows": len(spans)}
    if all(w.base_values is not None for w in windows):  # SHAP: scores sum to probability - base_value
        extra["base_value"] = float(np.mean([w.base_values[target] for w in windows]))
    return Attribution(text=text, tokens=units, scores=scores, predicted=target,
                       probability=float(probabilities[target]), label=label_names[target], method=method,
                       extra=extra)


def explain_texts(method: str, predictor: Predictor, texts: list[str], max_evals: int = 500,
                  batch_size: int = 256, seed: int = 0) -> list[Attribution]:
    """Attributions of every text to its predicted class, long texts window by window (when the predictor
    reads them over windows; else they are explained as truncated)."""
    plans = [[(0, len(t))] if predictor.stride is None else
             word_windows(predictor.tokenizer, t, predictor.max_length, predictor.stride) for t in texts]
    short = [i for i, spans in enumerate(plans) if len(spans) == 1]
    long = [i for i, spans in enumerate(plans) if len(spans) > 1]
    results: list[Attribution | None] = [None] * len(texts)
    for i, attribution in zip(short, explain(method, predictor, [texts[i] for i in short], max_evals, batch_size,
                                             seed), strict=True):
        results[i] = attribution
    if long:
        probabilities = predictor([texts[i] for i in long])
        pieces, targets = [], []
        for row, i in enumerate(long):
            pieces += [texts[i][start:end] for start, end in plans[i]]
            targets += [int(probabilities[row].argmax())] * len(plans[i])
        windows = iter(explain(method, predictor, pieces, max_evals, batch_size, seed, targets=targets))
        for row, i in enumerate(long):
            own = [next(windows) for _ in plans[i]]
            results[i] = stitch(texts[i], plans[i], own, probabilities[row], predictor.label_names, method)
    return results
