"""Batch prediction over files and ONNX export with its parity gate, on tiny BERT-, Llama- and GPT-2-style models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import LABELS, ROOT, make_classifier, sentiment_rows, write_csv

from pipelines.errors import UserError
from pipelines.export import ExportSettings, ParitySet, run_export
from pipelines.predict import PredictSettings, run_predict


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_llama", "tiny_gpt2"])
def classifier(request, tmp_path_factory) -> Path:
    base = request.getfixturevalue(request.param)
    return make_classifier(base, tmp_path_factory.mktemp(f"{request.param}_classifier"))


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
    from pipelines.predict import write_frame

    frame = input_rows()
    source = tmp_path / f"in{suffix}"
    write_frame(frame, source)
    out = tmp_path / f"out{suffix}"
    result = run_predict(PredictSettings(model=str(classifier), input_file=str(source), output_file=str(out),
                                         batch_size=4, top_k=2, progress=False, num_threads=1, precision="fp32"))
    from pipelines.data import read_frame

    written = read_frame(out)
    assert result.rows == len(frame) == len(written)
    for column in frame.columns:  # input columns come back unchanged, in order
        assert [str(v or "") for v in written[column]] == [str(v or "") for v in frame[column]]
    expected = direct_probabilities(classifier, frame["text"].tolist())
    probabilities = written[[f"prob_{n}" for n in LABELS]].astype(float).to_numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert written["label"].tolist() == [LABELS[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(written["score"].astype(float), expected.max(1), atol=1e-4)
    if suffix == ".csv":  # bf16 autocast: the same rows, probabilities within bf16 rounding
        run_predict(PredictSettings(model=str(classifier), input_file=str(source), output_file=str(out),
                                    precision="bf16", overwrite=True, progress=False, num_threads=1))
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
    settings = PredictSettings(model=str(classifier), input_file=str(source), output_file=str(out),
                               label_column="label", progress=False, num_threads=1)
    result = run_predict(settings)
    written = pd.read_csv(out)
    assert written["label"].tolist() == [label for _, label in rows]  # the gold column is kept
    assert result.accuracy == pytest.approx((written["predicted_label"] == written["label"]).mean())

    before = out.read_bytes()
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        run_predict(settings)
    assert out.read_bytes() == before
    with pytest.raises(UserError, match="no text column 'body'; the columns are 'text', 'label'"):
        run_predict(PredictSettings(model=str(classifier), input_file=str(source), output_file=str(tmp_path / "o.csv"),
                                    text_column="body"))
    with pytest.raises(UserError, match="is the input file"):
        run_predict(PredictSettings(model=str(classifier), input_file=str(source), output_file=str(source),
                                    overwrite=True))
    with pytest.raises(UserError, match="unknown type '.xlsx'"):
        run_predict(PredictSettings(model=str(classifier), input_file=str(source),
                                    output_file=str(tmp_path / "o.xlsx")))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(UserError, match="only pickle weights"):
        run_predict(PredictSettings(model=str(pickled), input_file=str(source), output_file=str(tmp_path / "o.csv")))
    assert not (tmp_path / "o.csv").exists()


def parity_of(texts: list[str], labels: list[int] | None = None) -> ParitySet:
    return ParitySet("test texts", texts, None, None if labels is None else np.asarray(labels))


def test_onnx_export_matches_pytorch_and_predicts_the_same(classifier, tmp_path):
    texts = [t for t, _ in sentiment_rows(30, seed=3)] + ["a much longer text " * 8]
    settings = ExportSettings(measure_latency=False, num_threads=1, min_agreement=0.0, max_accuracy_drop=1.0)
    result = run_export(classifier, tmp_path / "onnx", parity_of(texts), settings)
    metrics = json.loads((tmp_path / "onnx" / "export_metrics.json").read_text())
    assert metrics["onnx_fp32"]["max_abs_logit_diff"] <= 1e-4 and metrics["gate"]["passed"]
    assert {"model.onnx", "model.int8.onnx", "config.json", "README.md", "manifest.json"} <= {
        p.name for p in (tmp_path / "onnx").iterdir()}
    assert not list((tmp_path / "onnx").glob(".candidate-*")) and not list((tmp_path / "onnx").glob(".staging-*"))
    assert result.metrics["onnx_int8"]["size_mb"] < result.metrics["onnx_fp32"]["size_mb"]

    source = write_csv(tmp_path / "in.csv", [(t, "x") for t in texts], header=("text", "other"))
    outputs = {}
    for name, model, variant in (("torch", classifier, "auto"), ("onnx", tmp_path / "onnx", "fp32")):
        out = tmp_path / f"{name}.csv"
        run_predict(PredictSettings(model=str(model), input_file=str(source), output_file=str(out),
                                    variant=variant, progress=False, num_threads=1, batch_size=5, precision="fp32"))
        outputs[name] = pd.read_csv(out)
    assert outputs["onnx"]["label"].tolist() == outputs["torch"]["label"].tolist()
    columns = [f"prob_{n}" for n in LABELS]
    np.testing.assert_allclose(outputs["onnx"][columns].to_numpy(), outputs["torch"][columns].to_numpy(), atol=1e-5)


def test_parity_gate_refuses_altered_logits(tiny_bert, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    import pipelines.export as export

    classifier = make_classifier(tiny_bert, tmp_path / "model")
    real_export = export.export_fp32

    def export_then_tamper(model_dir, target, opset=17):
        real_export(model_dir, target, opset)
        path = target / "model.onnx"
        graph = onnx.load(str(path))
        bias = next(t for t in graph.graph.initializer if "classifier" in t.name and "bias" in t.name)
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.01, bias.name))
        onnx.save(graph, str(path))

    monkeypatch.setattr(export, "export_fp32", export_then_tamper)
    texts = [t for t, _ in sentiment_rows(12)]
    settings = ExportSettings(measure_latency=False, num_threads=1, quantize="none")
    out = tmp_path / "onnx"
    with pytest.raises(UserError, match=r"refused by the parity gate: fp32 ONNX logits differ from PyTorch by up to "
                                        r"0\.01 \(allowed 0\.0001\)"):
        run_export(classifier, out, parity_of(texts), settings)
    assert not (out / "model.onnx").exists() and not (out / "manifest.json").exists()
    assert not list(out.glob(".staging-*"))

    forced = run_export(classifier, out, parity_of(texts), settings, overwrite=True, force=True)
    assert not forced.metrics["gate"]["passed"] and (out / "model.onnx").is_file()
    assert "FAILED" in (out / "README.md").read_text()


def test_int8_gate_uses_accuracy_and_keeps_the_most_quantized_passing_recipe(tiny_bert, tmp_path):
    classifier = make_classifier(tiny_bert, tmp_path / "model")
    rows = sentiment_rows(40, seed=4)
    texts = [t for t, _ in rows]
    from pipelines.backends import load_backend, logits_for_texts

    predicted = logits_for_texts(load_backend(classifier, num_threads=1), texts).argmax(1).tolist()
    settings = ExportSettings(measure_latency=False, num_threads=1, max_accuracy_drop=0.0, try_all_int8=True)
    result = run_export(classifier, tmp_path / "onnx", parity_of(texts, predicted), settings)
    int8 = result.metrics["onnx_int8"]
    passing = [c["recipe"] for c in int8["candidates"] if c["passed"]]
    assert len(int8["candidates"]) == 5
    if passing:  # the first passing recipe in order is the one kept
        assert int8["recipe"] == passing[0] and int8["dev_accuracy"] == 1.0
    else:
        assert not result.metrics["gate"]["passed"]  # pragma: no cover - only if every recipe flips a label


def test_export_and_predict_scripts(tmp_path, tiny_bert):
    classifier = make_classifier(tiny_bert, tmp_path / "model")
    evaluation = write_csv(tmp_path / "eval.csv", [(t, ["negative", "positive"][i % 2])
                                                   for i, (t, _) in enumerate(sentiment_rows(10))])
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/export.py"), "--model", str(classifier), "--output-dir",
         str(tmp_path / "onnx"), "--eval-file", str(evaluation), "--max-accuracy-drop", "1", "--no-latency",
         "--num-threads", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "onnx_fp32" in run.stdout and (tmp_path / "onnx" / "model.int8.onnx").is_file()
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/predict.py"), "--model", str(tmp_path / "onnx"), "--input-file",
         str(evaluation), "--output-file", str(tmp_path / "p.jsonl"), "--label-column", "label", "--no-progress",
         "--num-threads", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "onnx-int8" in run.stdout and "accuracy against 'label'" in run.stdout
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 10
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/predict.py"), "--model", str(tmp_path / "missing"), "--input-file",
         str(evaluation), "--output-file", str(tmp_path / "q.csv")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [
        f"error: model folder {tmp_path / 'missing'} does not exist"]
