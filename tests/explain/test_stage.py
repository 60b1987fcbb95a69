"""Explanations: SHAP efficiency, a keyword model's top token, faithfulness vs random, escaping, pairs."""

from __future__ import annotations

import json
import random
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from explain import agreement as agreement_module
from explain import faithfulness as faithfulness_module
from explain.config import ExplainConfig
from explain.methods import explain
from explain.predictor import Predictor
from explain.stage import run_explain
from finetune.stage import run_finetune
from pipelines.errors import UserError
from pipelines.models import load_trained_classifier
from tests.conftest import tiny_config, write_csv

FILLERS = "the a movie film plot actors was is it this and but very really story good bad".split()


def keyword_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Label 'yes' exactly when the word 'superb' occurs; the other words are noise."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(FILLERS, rng.randint(3, 7))
        if i % 2 == 0:
            words.insert(rng.randint(0, len(words)), "superb")
        rows.append((" ".join(words), "yes" if i % 2 == 0 else "no"))
    return rows


@pytest.fixture(scope="module")
def keyword_model(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("keyword")
    train = write_csv(folder / "train.csv", keyword_rows(256, 1))
    evaluation = write_csv(folder / "eval.csv", keyword_rows(32, 2))
    result = run_finetune(tiny_config(tiny_bert, train, evaluation, folder / "model", method="full", max_steps=160,
                                      batch_size=16, learning_rate=1e-3, eval_steps=80))
    assert result.metrics["eval"]["accuracy"] == 1.0
    return folder / "model", evaluation


@pytest.fixture(scope="module")
def predictor(keyword_model):
    model, tokenizer, _ = load_trained_classifier(str(keyword_model[0]))
    return Predictor(model, tokenizer, batch_size=64, max_length=32)


TEXTS = ["the movie was superb and the plot really good", "it is a superb film", "bad story but superb actors"]


def test_shap_attributions_sum_to_output_minus_base(predictor):
    attributions = explain("shap", predictor, TEXTS, max_evals=200)
    probabilities = predictor(TEXTS)
    for a, p in zip(attributions, probabilities, strict=True):
        np.testing.assert_allclose(a.values.sum(axis=0) + a.base_values, p, atol=1e-6)
        assert a.label == "yes" and a.probability == pytest.approx(p.max())


@pytest.mark.parametrize("method", ["shap", "lime", "ig"])
def test_the_keyword_gets_the_top_attribution(predictor, method):
    attributions = explain(method, predictor, TEXTS, max_evals=300, seed=0)
    for a in attributions:
        assert a.tokens[int(np.argmax(a.scores))].strip() == "superb", (method, a.tokens, a.scores)
    scores = faithfulness_module.summarize(faithfulness_module.faithfulness(predictor, attributions))
    random_scores = faithfulness_module.summarize(faithfulness_module.random_baseline(predictor, attributions))
    assert scores["aopc_comprehensiveness"] > random_scores["aopc_comprehensiveness"] + 0.1
    assert scores["aopc_sufficiency"] < random_scores["aopc_sufficiency"]


def test_predictor_batches_deduplicate_and_keep_order(predictor):
    texts = ["superb", "the plot", "superb", "a b c superb film really"]
    together = predictor(texts)
    alone = np.vstack([predictor([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(together.sum(axis=1), 1.0, atol=1e-9)


def test_metric_declarations_are_complete():
    for spec in [*faithfulness_module.SPECS.values(), *agreement_module.SPECS.values()]:
        assert spec.name and isinstance(spec.higher_is_better, bool) and spec.low < spec.high


def test_stage_report_with_comparison_and_escaping(keyword_model, tmp_path):
    model_dir, _ = keyword_model
    hostile = tmp_path / "hostile"
    shutil.copytree(model_dir, hostile)
    config = json.loads((hostile / "config.json").read_text())
    config["id2label"] = {"0": "no", "1": "<script>alert('label')</script>"}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (hostile / "config.json").write_text(json.dumps(config))
    texts = ["<script>alert('text')</script> superb film", 'a "quoted" <b>bold</b> plot', "it was superb"]
    out = tmp_path / "report"
    result = run_explain(ExplainConfig(output_dir=str(out), model=str(hostile), compare=str(hostile), texts=texts,
                                       methods=["shap", "lime"], max_evals=100, batch_size=32, max_length=32))
    html = (out / "report.html").read_text()
    assert "<script" not in html and "<b>bold" not in html and '"quoted"' not in html
    assert "&lt;script&gt;" in html
    assert "src=\"http" not in html and "<link" not in html  # self-contained
    parser = HTMLParser()
    parser.feed(html)
    parser.close()
    lines = (out / "attributions.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 3  # models x methods x texts
    metrics = json.loads((out / "explain_metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    same = {row["method"]: row for row in metrics["agreement"]}
    assert same["shap"]["spearman"] == pytest.approx(1.0) and same["shap"]["top_k_overlap"] == 1.0
    assert {row["method"] for row in metrics["faithfulness"]} == {"shap", "lime", "random"}


def test_sentence_pairs_are_explained(tiny_bert, tmp_path):
    rows = [(t, "it is", y) for t, y in keyword_rows(64, 3)]
    train = write_csv(tmp_path / "train.csv", rows, header=("premise", "hypothesis", "label"))
    config = tiny_config(tiny_bert, train, None, tmp_path / "model", max_steps=4, eval_steps=4)
    config.data.text_column, config.data.text_pair_column = "premise", "hypothesis"
    run_finetune(config)
    result = run_explain(ExplainConfig(output_dir=str(tmp_path / "out"), model=str(tmp_path / "model"),
                                       input_file=str(train), text_column="premise", text_pair_column="hypothesis",
                                       num_examples=3, select="first", max_evals=50, max_length=32))
    record = json.loads((tmp_path / "out" / "attributions.jsonl").read_text().splitlines()[0])
    assert "superb" in record["text"] and record["text"].endswith("it is")
    assert result.metrics["examples"] == 3


def test_without_texts_the_models_eval_split_is_explained(keyword_model, tmp_path):
    model_dir, evaluation = keyword_model
    result = run_explain(ExplainConfig(output_dir=str(tmp_path / "out"), model=str(model_dir), num_examples=4,
                                       max_evals=40))
    rows = dict(line.rsplit(",", 1) for line in evaluation.read_text().splitlines()[1:])
    records = [json.loads(line) for line in (tmp_path / "out" / "attributions.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["text"] in rows for r in records)  # rows of the recorded eval file
    info = result.metrics["examples_info"]
    assert [i["gold"] for i in info] == [rows[r["text"]] for r in records]  # gold label names, not ids
    assert {i["group"] for i in info} <= {"most confident", "least confident", "misclassified"}
    assert result.metrics["models"][0]["accuracy"] == 1.0


def test_refusals(keyword_model, tmp_path, tiny_bert):
    model_dir, evaluation = keyword_model
    with pytest.raises(UserError, match="larger than"):
        run_explain(ExplainConfig(output_dir=str(tmp_path / "a"), model=str(model_dir), input_file=str(evaluation),
                                  num_examples=1000))
    with pytest.raises(UserError, match="no text column 'sentence'"):
        run_explain(ExplainConfig(output_dir=str(tmp_path / "b"), model=str(model_dir), input_file=str(evaluation),
                                  text_column="sentence"))
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {"0": "negative", "1": "positive"}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="labels .* differ"):
        run_explain(ExplainConfig(output_dir=str(tmp_path / "c"), model=str(model_dir), compare=str(other),
                                  texts=["superb"]))
    with pytest.raises(UserError, match="methods must be among"):
        ExplainConfig(methods=["gradcam"])
    assert not any((tmp_path / n).exists() for n in "abc")
