"""Texts longer than the model's window, explained window by window: stitched attributions are the windows' own
(divided by the number of windows), keep SHAP's additivity, cover every word, and a text that fits is
explained exactly as before; the stage explains long texts end to end."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from explain.attribution import word_scores
from explain.config import ExplainConfig
from explain.long_texts import explain_texts, word_units
from explain.methods import explain
from explain.predictor import Predictor
from explain.stage import run_explain
from pipelines.models import load_trained_classifier
from pipelines.windows import WORD, word_windows
from tests.conftest import write_csv
from tests.explain.test_stage import keyword_model, keyword_rows  # noqa: F401 (the fixture)

WINDOW, STRIDE = 24, 6


def document(rows: int = 14, seed: int = 7) -> str:
    return " ".join(text for text, _ in keyword_rows(rows, seed))


@pytest.fixture(scope="module")
def windowed(keyword_model):  # noqa: F811
    model, tokenizer, _ = load_trained_classifier(str(keyword_model[0]))
    return Predictor(model, tokenizer, batch_size=64, max_length=WINDOW, stride=STRIDE)


def test_word_units_join_back_into_the_text():
    for text in ["  two words ", "one", "a\tb\n c  "]:
        assert "".join(word_units(text)) == text
        assert len(word_units(text)) == len(text.split())


def test_a_text_that_fits_is_explained_as_without_windows(windowed):
    text = "the movie was superb and the plot really good"
    plain = Predictor(windowed.model, windowed.tokenizer, batch_size=64, max_length=WINDOW)
    (ours,), (reference,) = explain_texts("ig", windowed, [text]), explain("ig", plain, [text])
    assert ours.tokens == reference.tokens
    np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-6)


def test_stitched_words_are_their_windows_attributions_over_the_number_of_windows(windowed):
    text = document()
    spans = word_windows(windowed.tokenizer, text, WINDOW, STRIDE)
    assert len(spans) >= 3
    (stitched,) = explain_texts("ig", windowed, [text])
    target = stitched.predicted
    assert target == int(windowed([text])[0].argmax())
    words = [m.start() for m in WORD.finditer(text)]
    expected = np.zeros(len(words))
    for start, end in spans:  # each window explained alone, unwindowed, for the text's class
        (alone,) = explain("ig", windowed, [text[start:end]], targets=[target])
        _, per_word = word_scores(alone.text, alone.tokens, alone.scores)
        first = words.index(start)
        expected[first : first + len(per_word)] += per_word / len(spans)
    _, got = word_scores(stitched.text, stitched.tokens, stitched.scores)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.count_nonzero(got) == len(words)  # every word of the whole text has an attribution


def test_stitched_shap_keeps_additivity(windowed):
    text = document(10, seed=3)
    (stitched,) = explain_texts("shap", windowed, [text], max_evals=100)
    assert stitched.extra["windows"] > 1
    assert stitched.probability == pytest.approx(float(windowed([text])[0, stitched.predicted]))
    assert stitched.scores.sum() == pytest.approx(stitched.probability - stitched.extra["base_value"], abs=1e-4)


def test_the_stage_explains_long_texts_whole_with_rationales(keyword_model, tmp_path):  # noqa: F811
    texts = [document(14, seed=s) for s in (1, 2)] + ["it is a superb film"]
    rationales = [json.dumps([int(w == "superb") for w in t.split()]) for t in texts]
    source = write_csv(tmp_path / "long.tsv", list(zip(texts, ["yes"] * 3, rationales, strict=True)),
                       header=("text", "label", "rationale"), sep="\t")
    result = run_explain(ExplainConfig(model=str(keyword_model[0]), input_file=str(source),
                                       rationale_column="rationale", num_examples=3, select="first",
                                       methods=["shap", "ig"], max_evals=100, max_length=WINDOW, stride=STRIDE,
                                       output_dir=str(tmp_path / "out")))
    counts = result.metrics["long_texts"][keyword_model[0].name]
    assert (counts["windowed"], counts["truncated"]) == (2, 0)
    records = [json.loads(line) for line in (tmp_path / "out" / "attributions.jsonl").read_text().splitlines()]
    for record in records:
        assert "".join(record["tokens"]) == record["text"]  # the whole text, not its first window
        words, scores = word_scores(record["text"], record["tokens"], np.asarray(record["scores"]))
        assert len(words) == len(record["text"].split())  # a score for every word (rounded to 6 decimals here)
        assert np.count_nonzero(scores[-8:]) > 0  # the last words, past the first windows, are attributed
    plausible = {row["method"]: row for row in result.metrics["plausibility"]}
    assert set(plausible) == {"shap", "ig", "random"} and plausible["shap"]["scored"] == 3
    assert plausible["shap"]["token_auprc"] > plausible["random"]["token_auprc"]  # 'superb' decides the label
    page = (tmp_path / "out" / "report.html").read_text()
    assert "2 read and explained over overlapping windows of 24 tokens" in page
    assert "human rationale" in page and "<mark>superb</mark>" in page
    last_words = re.escape(texts[0].split()[-1])
    assert len(re.findall(last_words, page)) >= 1


def test_the_stage_reads_an_eraser_folder_and_scores_its_evidence(keyword_model, tmp_path):  # noqa: F811
    from tests.explain.test_plausibility import evidence, write_eraser

    docs = {"d1": "the plot was superb\nreally good actors\n", "d2": "a bad story\nbut the film is superb\n"}
    annotations = [
        {"annotation_id": "d1", "classification": "yes", "query": "", "evidences": [[evidence("d1", 3, 4, "superb")]]},
        {"annotation_id": "d2", "classification": "yes", "query": "",
         "evidences": [[evidence("d2", 7, 8, "superb")]]},
    ]
    path = write_eraser(tmp_path, annotations, docs)
    result = run_explain(ExplainConfig(model=str(keyword_model[0]), input_file=str(path), num_examples=2,
                                       select="first", methods=["ig"], output_dir=str(tmp_path / "out")))
    (row,) = [r for r in result.metrics["plausibility"] if r["method"] == "ig"]
    assert row["scored"] == 2
    assert result.metrics["models"][0]["accuracy"] == 1.0  # the annotations' classification is the gold label
    info = result.metrics["examples_info"]
    assert [i["rationale"] for i in info] == [[0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1]]
