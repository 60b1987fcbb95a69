"""The export and predict scripts end to end: one CLI style, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, make_classifier, sentiment_rows, write_csv


def test_export_and_predict_scripts(tmp_path, tiny_bert):
    classifier = make_classifier(tiny_bert, tmp_path / "model")
    evaluation = write_csv(tmp_path / "eval.csv", [(t, ["negative", "positive"][i % 2])
                                                   for i, (t, _) in enumerate(sentiment_rows(10))])
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/export.py"), "--model", str(classifier), "--output-dir",
         str(tmp_path / "onnx"), "--eval-file", str(evaluation), "--max-accuracy-drop", "1", "--no-measure-latency",
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
