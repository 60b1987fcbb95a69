"""Plausibility metrics against hand-computed values, and the rationale readers (masks, spans, JSON, ERASER)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from explain.attribution import Attribution
from explain.plausibility import iou_f1, plausibility, plausibility_scores, random_baseline, spans, summarize
from explain.rationales import is_eraser, rationale_mask, rationales_of, read_eraser
from pipelines.errors import UserError


def scores_of(word_scores, rationale):
    return plausibility_scores(np.array(word_scores), np.array(rationale))


def test_metrics_match_hand_computed_values():
    # ranked: w0 (gold), w2, w3 (gold), w4 (gold), w1 -> AP = (1/1 + 2/3 + 3/4) / 3 = 29/36
    # top-3 = {0, 2, 3}, 2 of them gold -> P = R = 2/3 -> F1 = 2/3
    # predicted spans [0,1) [2,4) vs gold [0,1) [3,5): IOUs 1 and 1/3 -> tp 1, P = R = 1/2 -> F1 1/2
    got = scores_of([0.9, 0.1, 0.8, 0.3, 0.2], [1, 0, 0, 1, 1])
    assert got == pytest.approx({"token_auprc": 29 / 36, "token_f1_top_k": 2 / 3, "iou_f1": 0.5})
    assert scores_of([0.1, 0.9, 0.8, 0.0], [0, 1, 1, 0]) == pytest.approx(
        {"token_auprc": 1.0, "token_f1_top_k": 1.0, "iou_f1": 1.0})


def test_ties_are_grouped_in_ap_and_broken_by_position_in_top_k():
    # the two tied words enter the curve together: P = 1/2 at R = 1 -> AP 1/2 (ungrouped would give 1)
    # top-1 by stable order is word 0 -> F1 1, spans [0,1) vs [0,1) -> IOU F1 1
    assert scores_of([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(
        {"token_auprc": 0.5, "token_f1_top_k": 1.0, "iou_f1": 1.0})
    # thresholds 0.5 (P 1/2, R 1/2) and 0.2 (P 2/3, R 1): AP = 1/2 * 1/2 + 1/2 * 2/3 = 7/12
    # top-2 = {0, 1}: 1 gold -> F1 1/2; span [0,2) vs gold [1,3): IOU 1/3 < 0.5 -> 0
    assert scores_of([0.5, 0.5, 0.2, 0.1], [0, 1, 1, 0]) == pytest.approx(
        {"token_auprc": 7 / 12, "token_f1_top_k": 0.5, "iou_f1": 0.0})


def test_no_rationale_words_gives_nan():
    got = scores_of([0.3, 0.2], [0, 0])
    assert set(got) == {"token_auprc", "token_f1_top_k", "iou_f1"} and all(math.isnan(v) for v in got.values())


def test_iou_f1_on_explicit_spans():
    assert spans(np.array([1, 1, 0, 1, 0, 1])) == [(0, 2), (3, 4), (5, 6)]
    # (0,2) vs (0,3): IOU 2/3 -> hit; (5,6): miss -> P 1/2, R 1 -> F1 2/3
    assert iou_f1([(0, 2), (5, 6)], [(0, 3)]) == pytest.approx(2 / 3)
    assert iou_f1([(0, 1)], [(0, 2)]) == 1.0  # IOU exactly 0.5 counts
    assert iou_f1([(0, 1)], [(0, 3)]) == 0.0
    assert iou_f1([], [(0, 1)]) == 0.0


def attribution(text, tokens, scores):
    return Attribution(text, tokens, np.array(scores, float), 0, 0.9, "pos", "test")


def test_plausibility_sums_units_into_words_and_scores_the_first_text_of_a_pair():
    a = attribution("great plot bad", ["", "gre", "at", " plot", " bad", ""], [0.0, 0.5, 0.4, 0.1, 0.2, 0.0])
    pair = attribution("great plot bad acting", ["great", " plot", " bad", " acting"], [0.9, 0.1, 5.0, 5.0])
    rows = plausibility([a, pair, a], [np.array([1, 0, 1]), np.array([0, 1]), None])
    # words great 0.9, plot 0.1, bad 0.2: the gold words rank first
    assert rows[0] == pytest.approx({"token_auprc": 1.0, "token_f1_top_k": 1.0, "iou_f1": 1.0})
    # only "great plot" is scored: plot ranks 2nd -> AP 1/2, top-1 = great -> 0, 0
    assert rows[1] == pytest.approx({"token_auprc": 0.5, "token_f1_top_k": 0.0, "iou_f1": 0.0})
    assert rows[2] is None
    with pytest.raises(ValueError, match=r"example 1: .*5 values .*4 words"):
        plausibility([a, pair], [np.array([1, 0, 1]), np.array([0, 1, 0, 0, 1])])


def test_summarize_skips_missing_and_nan_rows():
    rows = [{"token_auprc": 29 / 36, "token_f1_top_k": 2 / 3, "iou_f1": 0.5}, None,
            {"token_auprc": 1.0, "token_f1_top_k": 1.0, "iou_f1": 1.0},
            {"token_auprc": math.nan, "token_f1_top_k": math.nan, "iou_f1": math.nan}]
    assert summarize(rows) == pytest.approx({"token_auprc": 65 / 72, "token_f1_top_k": 5 / 6, "iou_f1": 0.75,
                                             "scored": 2})


def test_random_baseline():
    rows = random_baseline([np.ones(4), np.array([1, 0, 0, 0]), None], draws=4000, seed=1)
    assert rows[0] == pytest.approx({"token_auprc": 1.0, "token_f1_top_k": 1.0, "iou_f1": 1.0})  # all words gold
    # one gold word of 4 at a uniformly random rank: AP = 1/rank, E = (1 + 1/2 + 1/3 + 1/4) / 4; F1@1 = 1/4
    assert rows[1]["token_auprc"] == pytest.approx(25 / 48, abs=0.02)
    assert rows[1]["token_f1_top_k"] == pytest.approx(0.25, abs=0.02) and rows[2] is None
    assert rows == random_baseline([np.ones(4), np.array([1, 0, 0, 0]), None], draws=4000, seed=1)


def test_average_precision_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = rng.integers(0, 2, 12)
        r[0] = 1
        s = rng.integers(0, 4, 12) / 4  # many ties
        assert scores_of(s, r)["token_auprc"] == pytest.approx(metrics.average_precision_score(r, s))


# --- reading rationales


def test_mask_spans_and_json_forms():
    assert rationale_mask([1, 0, True, False], 4, "x").tolist() == [1, 0, 1, 0]
    assert rationale_mask([[0, 2], [3, 4]], 5, "x").tolist() == [1, 1, 0, 1, 0]
    assert rationale_mask("[[1, 3]]", 4, "x").tolist() == [0, 1, 1, 0]
    assert rationale_mask("[0, 1]", 2, "x").tolist() == [0, 1]
    assert all(rationale_mask(v, 3, "x") is None for v in (None, "", " ", [], float("nan")))


@pytest.mark.parametrize(("value", "n_words", "message"), [
    ([0, 1] * 6, 14, "data.jsonl: line 7: has 12 rationale values for 14 words"),
    ([0, 2, 1], 3, "data.jsonl: line 7: rationale values must be 0 or 1 (or word spans), got 2"),
    ([[3, 9]], 5, "data.jsonl: line 7: rationale span [3, 9] does not fit 5 words"),
    ([[2, 2]], 5, "data.jsonl: line 7: rationale span [2, 2] does not fit 5 words"),
    ([[1, 2, 3]], 5, "data.jsonl: line 7: rationale span [1, 2, 3] is not a pair"),
    ("[1, 0", 2, "data.jsonl: line 7: the rationale is not valid JSON"),
    ({"a": 1}, 2, "data.jsonl: line 7: the rationale must be a list"),
])
def test_mask_errors_name_the_line_and_the_numbers(value, n_words, message):
    with pytest.raises(UserError) as err:
        rationale_mask(value, n_words, "data.jsonl: line 7")
    assert message in str(err.value)


def test_rationales_of_counts_lines_from_first_line():
    masks = rationales_of(["a b  c", "d e"], ["[1, 0, 1]", None], "train.csv")
    assert masks[0].tolist() == [1, 0, 1] and masks[1] is None
    with pytest.raises(UserError, match=r"train\.csv: line 3: has 1 rationale values for 2 words"):
        rationales_of(["a b c", "d e"], ["[1, 0, 1]", "[1]"], "train.csv")
    with pytest.raises(UserError, match=r"train\.jsonl: line 2: "):
        rationales_of(["a b c", "d e"], ["[1, 0, 1]", "[1]"], "train.jsonl", first_line=1)


def write_eraser(folder, annotations, docs):
    (folder / "docs").mkdir()
    for docid, text in docs.items():
        (folder / "docs" / docid).write_text(text, encoding="utf-8")
    path = folder / "val.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in annotations), encoding="utf-8")
    return path


def evidence(docid, start, end, text):
    return {"docid": docid, "start_token": start, "end_token": end, "start_sentence": 0, "end_sentence": 1,
            "text": text}


DOCS = {"doc1": "the movie was great .\nI loved it .\n", "doc2": "a dull plot\nbad acting overall\n"}
ANNOTATIONS = [
    {"annotation_id": "doc1", "classification": "POS", "query": "What is the sentiment?",
     "evidences": [[evidence("doc1", 3, 4, "great")], [evidence("doc1", 5, 8, "I loved it")]]},
    {"annotation_id": "ann-2", "classification": "NEG", "query": "", "docids": ["doc2"],
     "evidences": [[evidence("elsewhere", 0, 1, "x"), evidence("doc2", 1, 2, "dull")]]},
]


def test_read_eraser(tmp_path):
    path = write_eraser(tmp_path, ANNOTATIONS, DOCS)
    assert is_eraser(path)
    data = read_eraser(path)
    assert data["annotation_id"] == ["doc1", "ann-2"] and data["label"] == ["POS", "NEG"]
    assert data["text"] == ["the movie was great . I loved it .", "a dull plot bad acting overall"]
    assert data["rationale"] == [[0, 0, 0, 1, 0, 1, 1, 1, 0], [0, 1, 0, 0, 0, 0]]


def test_is_eraser_needs_the_keys_and_docs(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "a", "label": "b"}\n', encoding="utf-8")
    assert not is_eraser(plain)  # no docs/ and no ERASER keys
    (tmp_path / "docs").mkdir()
    assert not is_eraser(plain)


def test_read_eraser_refuses_mismatched_evidence_and_missing_docs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    wrong = [{**ANNOTATIONS[0], "evidences": [[evidence("doc1", 5, 8, "loved it .")]]}]
    with pytest.raises(UserError, match=r"val\.jsonl: line 1: .*'doc1'.*'I loved it'"):
        read_eraser(write_eraser(tmp_path / "a", wrong, DOCS))
    with pytest.raises(UserError, match=r"val\.jsonl: line 2: document 'doc2' is missing"):
        read_eraser(write_eraser(tmp_path / "b", ANNOTATIONS, {"doc1": DOCS["doc1"]}))
