"""ONNX export and its parity gate, on tiny BERT-, Llama- and GPT-2-style models; the parity set found in the
model's folder; teacher and student exported side by side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from export.config import ExportConfig, ExportSettings
from export.parity import ParitySet
from export.stage import export_model, reference_backend, run_export
from finetune.stage import run_finetune
from pipelines.data import recorded_data
from pipelines.errors import UserError
from pipelines.inference import load_backend, text_logits
from predict.config import PredictConfig
from predict.stage import run_predict
from tests.conftest import LABELS, make_classifier, sentiment_rows, tiny_config, write_csv


def parity_of(texts: list[str], labels: list[int] | None = None) -> ParitySet:
    return ParitySet("test texts", texts, None, None if labels is None else np.asarray(labels), "fingerprint")


def export_one(model: Path, out: Path, parity: ParitySet, settings: ExportSettings, overwrite=False, force=False):
    """The export of one model folder on an in-memory parity set: (metrics, predictions)."""
    return export_model(reference_backend(model, settings), model, out, parity, settings, overwrite, force)


def test_onnx_export_matches_pytorch_and_predicts_the_same(classifier, tmp_path):
    texts = [t for t, _ in sentiment_rows(30, seed=3)] + ["a much longer text " * 8]
    settings = ExportSettings(measure_latency=False, num_threads=1, min_agreement=0.0, max_accuracy_drop=1.0)
    exported, _ = export_one(classifier, tmp_path / "onnx", parity_of(texts), settings)
    metrics = json.loads((tmp_path / "onnx" / "export_metrics.json").read_text())
    assert metrics["onnx_fp32"]["max_abs_logit_diff"] <= 1e-4 and metrics["gate"]["passed"]
    assert {"model.onnx", "model.int8.onnx", "config.json", "README.md", "manifest.json"} <= {
        p.name for p in (tmp_path / "onnx").iterdir()}
    assert not list((tmp_path / "onnx").glob(".candidate-*")) and not list((tmp_path / "onnx").glob(".staging-*"))
    assert exported["onnx_int8"]["size_mb"] < exported["onnx_fp32"]["size_mb"]

    source = write_csv(tmp_path / "in.csv", [(t, "x") for t in texts], header=("text", "other"))
    outputs = {}
    for name, model, variant in (("torch", classifier, "auto"), ("onnx", tmp_path / "onnx", "fp32")):
        out = tmp_path / f"{name}.csv"
        run_predict(PredictConfig(model=str(model), input_file=str(source), output_file=str(out),
                                  variant=variant, progress=False, num_threads=1, batch_size=5, precision="fp32"))
        outputs[name] = pd.read_csv(out)
    assert outputs["onnx"]["label"].tolist() == outputs["torch"]["label"].tolist()
    columns = [f"prob_{n}" for n in LABELS]
    np.testing.assert_allclose(outputs["onnx"][columns].to_numpy(), outputs["torch"][columns].to_numpy(), atol=1e-5)


def test_parity_gate_refuses_altered_logits(tiny_bert, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    import export.stage as export

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
        export_one(classifier, out, parity_of(texts), settings)
    assert not (out / "model.onnx").exists() and not (out / "manifest.json").exists()
    assert not list(out.glob(".staging-*"))

    forced, _ = export_one(classifier, out, parity_of(texts), settings, overwrite=True, force=True)
    assert not forced["gate"]["passed"] and (out / "model.onnx").is_file()
    assert "FAILED" in (out / "README.md").read_text()


def test_int8_gate_uses_accuracy_and_keeps_the_most_quantized_passing_recipe(tiny_bert, tmp_path):
    classifier = make_classifier(tiny_bert, tmp_path / "model")
    rows = sentiment_rows(40, seed=4)
    texts = [t for t, _ in rows]
    predicted = text_logits(load_backend(classifier, num_threads=1), texts)[0].argmax(1).tolist()
    settings = ExportSettings(measure_latency=False, num_threads=1, max_accuracy_drop=0.0, try_all_int8=True)
    exported, _ = export_one(classifier, tmp_path / "onnx", parity_of(texts, predicted), settings)
    int8 = exported["onnx_int8"]
    passing = [c["recipe"] for c in int8["candidates"] if c["passed"]]
    assert len(int8["candidates"]) == 5
    if passing:  # the first passing recipe in order is the one kept
        assert int8["recipe"] == passing[0] and int8["dev_accuracy"] == 1.0
    else:
        assert not exported["gate"]["passed"]  # pragma: no cover - only if every recipe flips a label




def test_export_checks_on_the_models_recorded_split_without_being_asked(tiny_bert, sentiment_files, tmp_path):
    """A model fine-tuned without an eval file held out a split; export finds it, no --eval-file needed."""
    train, _ = sentiment_files
    model = tmp_path / "model"
    run_finetune(tiny_config(tiny_bert, train, None, model, max_steps=2, eval_strategy="no"))
    result = run_export(ExportConfig(model=str(model), output_dir=str(tmp_path / "onnx"), measure_latency=False,
                                     num_threads=1, max_accuracy_drop=1.0))
    held_out = recorded_data(model).eval
    assert result.metrics["parity_set"] == {"source": f"the eval split of {model} ({len(held_out)} rows)",
                                            "rows": len(held_out)}
    assert result.metrics["pytorch"]["dev_accuracy"] is not None  # its gold labels came with it


def test_teacher_and_student_side_by_side(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    for name in ("teacher", "student"):
        run_finetune(tiny_config(tiny_bert, train, evaluation, tmp_path / name, max_steps=2, eval_strategy="no"))
    out = tmp_path / "export"
    result = run_export(ExportConfig(model=str(tmp_path / "teacher"), compare=str(tmp_path / "student"),
                                     output_dir=str(out), measure_latency=False, num_threads=1,
                                     max_accuracy_drop=1.0))
    assert (out / "teacher" / "model.onnx").is_file() and (out / "student" / "model.int8.onnx").is_file()
    assert (out / "manifest.json").is_file() and not list(out.rglob(".staging-*"))
    table = json.loads((out / "deployment.json").read_text())
    assert table == json.loads(json.dumps(result.metrics)) and table["parity_rows"] == 16
    assert {(r["model"], r["format"]) for r in table["rows"]} == {
        (m, f) for m in ("teacher", "student") for f in ("pytorch", "onnx_fp32", "onnx_int8")}
    assert next(r for r in table["rows"] if (r["model"], r["format"]) == ("teacher", "pytorch"))[
        "agreement_with_teacher"] == 1.0
