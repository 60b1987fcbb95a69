"""Batch prediction over files: every row back in order with label names and probabilities, on tiny BERT-,
Llama- and GPT-2-style models; refusals before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.errors import UserError
from pipelines.tables import read_frame, write_frame
from predict.config import PredictConfig
from predict.stage import run_predict
from tests.conftest import LABELS, sentiment_rows, write_csv


def direct_probabilities(model_dir: Path, texts: list[str]) -> np.ndarray:
    """Each text alone through the plain transformers model: the reference for order and values."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return np.stack([torch.softmax(model(**tokenizer(t, return_tensors="pt")).logits[0], -1).numpy()
                         for t in texts])


def input_rows(n: int = 23) -> pd.DataFrame:
    rows = sentiment_rows(n, seed=5)
    return pd.DataFrame({"id": [f"r{i:02d}" for i in range(n)], "text": [t for t, _ in rows],
                         "note": ["x, \"quoted\"" if i % 3 == 0 else "" for i in range(n)]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_predict_keeps_rows_order_and_writes_label_names(classifier, tmp_path, suffix):
    frame = input_rows()
    source = tmp_path / f"in{suffix}"
    write_frame(frame, source)
    out = tmp_path / f"out{suffix}"
    result = run_predict(PredictConfig(model=str(classifier), input_file=str(source), output_file=str(out),
                                         batch_size=4, top_k=2, progress=False, num_threads=1, precision="fp32"))
    written = read_frame(out)
    assert result.metrics["rows"] == len(frame) == len(written) and result.output == out
    for column in frame.columns:  # input columns come back unchanged, in order
        assert [str(v or "") for v in written[column]] == [str(v or "") for v in frame[column]]
    expected = direct_probabilities(classifier, frame["text"].tolist())
    probabilities = written[[f"prob_{n}" for n in LABELS]].astype(float).to_numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert written["label"].tolist() == [LABELS[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(written["score"].astype(float), expected.max(1), atol=1e-4)
    if suffix == ".csv":  # bf16 autocast: the same rows, probabilities within bf16 rounding
        run_predict(PredictConfig(model=str(classifier), input_file=str(source), output_file=str(out),
                                  precision="bf16", progress=False, num_threads=1), overwrite=True)
        bf16 = read_frame(out)[[f"prob_{n}" for n in LABELS]].astype(float).to_numpy()
        np.testing.assert_allclose(bf16, expected, atol=0.05)
        written_bf16 = read_frame(out)
        assert written_bf16["id"].tolist() == frame["id"].tolist()
    second = np.sort(expected, axis=1)[:, -2]
    np.testing.assert_allclose(written["top2_score"].astype(float), second, atol=1e-4)
    assert set(written["top2_label"]) <= set(LABELS)


def test_predict_accuracy_collisions_and_refusals(classifier, tmp_path):
    rows = [(t, ["negative", "positive"][i % 2]) for i, (t, _) in enumerate(sentiment_rows(12))]
    source = write_csv(tmp_path / "gold.csv", rows)  # has a `label` column already
    out = tmp_path / "pred.csv"
    settings = PredictConfig(model=str(classifier), input_file=str(source), output_file=str(out),
                             label_column="label", progress=False, num_threads=1)
    result = run_predict(settings)
    written = pd.read_csv(out)
    assert written["label"].tolist() == [label for _, label in rows]  # the gold column is kept
    assert result.metrics["accuracy"] == pytest.approx((written["predicted_label"] == written["label"]).mean())

    before = out.read_bytes()
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        run_predict(settings)
    assert out.read_bytes() == before
    with pytest.raises(UserError, match="no text column 'body'; the columns are 'text', 'label'"):
        run_predict(PredictConfig(model=str(classifier), input_file=str(source), output_file=str(tmp_path / "o.csv"),
                                  text_column="body"))
    with pytest.raises(UserError, match="is the input file"):
        run_predict(PredictConfig(model=str(classifier), input_file=str(source), output_file=str(source)),
                    overwrite=True)
    with pytest.raises(UserError, match="unknown type '.xlsx'"):
        run_predict(PredictConfig(model=str(classifier), input_file=str(source),
                                    output_file=str(tmp_path / "o.xlsx")))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(UserError, match="only pickle weights"):
        run_predict(PredictConfig(model=str(pickled), input_file=str(source), output_file=str(tmp_path / "o.csv")))
    assert not (tmp_path / "o.csv").exists()
