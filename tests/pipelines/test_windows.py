"""Long texts over windows: each window fits, every word is read, consecutive windows overlap by at most the
stride, and a long text's probabilities are the mean of its windows'; a text that fits is read as it always was."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipelines.errors import UserError
from pipelines.inference import load_backend, softmax, text_logits
from pipelines.models import ModelSource, load_tokenizer
from pipelines.windows import WORD, Windowing, word_token_counts, word_windows
from predict.config import PredictConfig
from predict.stage import run_predict
from tests.conftest import sentiment_rows, write_csv


def long_text(words: int = 90, seed: int = 3) -> str:
    text = " ".join(t for t, _ in sentiment_rows(60, seed=seed))
    return " ".join(text.split()[:words])


@pytest.mark.parametrize("stride", [0, 4, 8])
def test_windows_fit_cover_every_word_and_overlap_by_at_most_the_stride(tiny_classifier, stride):
    tokenizer = load_tokenizer(ModelSource(str(tiny_classifier), str(tiny_classifier), "local"))
    text = long_text()
    spans = word_windows(tokenizer, text, max_length=24, stride=stride)
    assert len(spans) > 3
    words = [(m.start(), m.end()) for m in WORD.finditer(text)]
    _, counts = word_token_counts(tokenizer, text)
    covered = set()
    for k, (start, end) in enumerate(spans):
        assert len(tokenizer(text[start:end])["input_ids"]) <= 24
        inside = [i for i, (s, e) in enumerate(words) if s >= start and e <= end]
        assert (words[inside[0]][0], words[inside[-1]][1]) == (start, end)  # whole words only
        if k:
            shared = sorted(covered & set(inside))
            assert sum(counts[i] for i in shared) <= stride
            assert bool(shared) == (stride > 0)
        covered |= set(inside)
    assert covered == set(range(len(words)))


def test_a_text_that_fits_is_one_window_of_itself(tiny_classifier):
    tokenizer = load_tokenizer(ModelSource(str(tiny_classifier), str(tiny_classifier), "local"))
    assert word_windows(tokenizer, "  the movie was great ", 24, 4) == [(0, 22)]


def test_a_long_text_is_the_mean_of_its_windows_and_short_ones_are_unchanged(tiny_classifier):
    text, short = long_text(), "the movie was great"
    windowed = load_backend(tiny_classifier, max_length=24, stride=4)
    truncating = load_backend(tiny_classifier, max_length=24)
    logits, counts = text_logits(windowed, [short, text, short])
    assert (counts.windowed, counts.truncated) == (1, 0)
    pieces = [text[s:e] for s, e in word_windows(windowed.tokenizer, text, 24, 4)]
    expected = softmax(text_logits(truncating, pieces)[0]).mean(axis=0)
    np.testing.assert_allclose(softmax(logits)[1], expected, atol=1e-5)
    cut, cut_counts = text_logits(truncating, [short, text, short])
    assert (cut_counts.windowed, cut_counts.truncated) == (0, 1)
    np.testing.assert_allclose(logits[[0, 2]], cut[[0, 2]], atol=1e-5)  # what fits is read as before
    assert not np.allclose(softmax(cut)[1], softmax(logits)[1], atol=1e-4)  # the windows saw more than the cut


def test_predict_windows_long_texts_by_default_and_says_so(tiny_classifier, tmp_path, caplog):
    rows = [("the movie was great", "x"), (long_text(), "y"), (long_text(seed=4), "z")]
    source = write_csv(tmp_path / "in.csv", rows, header=("text", "id"))
    caplog.set_level(logging.INFO)
    result = run_predict(PredictConfig(model=str(tiny_classifier), input_file=str(source),
                                       output_file=str(tmp_path / "out.csv"), max_length=24, progress=False))
    assert (result.metrics["windowed"], result.metrics["truncated"]) == (2, 0)
    assert "read over overlapping windows" in caplog.text
    cut = run_predict(PredictConfig(model=str(tiny_classifier), input_file=str(source), long_texts="truncate",
                                    output_file=str(tmp_path / "cut.csv"), max_length=24, progress=False))
    assert (cut.metrics["windowed"], cut.metrics["truncated"]) == (0, 2)
    assert "were truncated" in caplog.text


@pytest.mark.parametrize("settings, message", [
    ({"stride": 20}, "stride must be between 0 and half of max_length (16)"),
    ({"stride": -1}, "stride must be between 0"),
    ({"long_texts": "split"}, "long_texts must be window or truncate"),
])
def test_window_settings_are_checked(settings, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Windowing(**{"max_length": 32, **settings})
