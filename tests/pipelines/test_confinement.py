"""Output stays inside the chosen output folder: label names and file names with `../`, absolute paths or NUL
characters never become paths, and a NUL in an output path is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from finetune.config import FinetuneConfig, LoraSettings
from finetune.stage import run_finetune
from pipelines.artifacts import check_output_dir
from pipelines.data import DataSettings
from pipelines.errors import UserError
from pipelines.models import ModelSettings
from pipelines.training.settings import TrainSettings
from predict.config import PredictConfig
from predict.stage import check_output_file, run_predict
from tests.conftest import sentiment_rows

HOSTILE = ["../../escaped", "/tmp/loradistill-absolute-label", "nul\x00label"]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_label_and_file_names_write_only_inside_the_output_folder(tiny_bert, tmp_path):
    sandbox = tmp_path / "sandbox"
    data_dir = sandbox / "in" / "..%2f..%2fodd name"
    data_dir.mkdir(parents=True)
    rows = [{"text": text, "label": HOSTILE[i % 3]} for i, (text, _) in enumerate(sentiment_rows(30))]
    train = data_dir / ".." / data_dir.name / "train.jsonl"  # a `..` in the input path
    pd.DataFrame(rows).to_json(data_dir / "train.jsonl", orient="records", lines=True)
    before = tree(tmp_path)
    out = sandbox / "out"
    run_finetune(FinetuneConfig(
        output_dir=str(out), model=ModelSettings(name=str(tiny_bert), max_length=32),
        data=DataSettings(train_file=str(train), validation_split=0.3), lora=LoraSettings(r=2, alpha=4),
        train=TrainSettings(max_steps=2, batch_size=8, eval_strategy="no", num_threads=1)))
    labels = json.loads((out / "config.json").read_text())["id2label"]
    assert sorted(labels.values()) == sorted(HOSTILE)  # kept as names, never used as paths
    predictions = out.parent / "predictions.csv"
    run_predict(PredictConfig(model=str(out), input_file=str(data_dir / "train.jsonl"),
                              output_file=str(predictions), progress=False, num_threads=1))
    new = tree(tmp_path) - before
    assert all(name.startswith(("sandbox/out", "sandbox/predictions.csv")) for name in new), sorted(new)
    assert not Path("/tmp/loradistill-absolute-label").exists()
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert {f"predicted_prob_{name}" for name in HOSTILE} <= set(pd.read_csv(predictions).columns)


@pytest.mark.parametrize("target", ["out\x00put", "sub/../out\x00"])
def test_nul_in_an_output_path_is_refused(tmp_path, target):
    with pytest.raises(UserError, match="contains a NUL character"):
        check_output_dir(tmp_path / target, resume=False, overwrite=False, stage="finetune")
    with pytest.raises(UserError, match="contains a NUL character"):
        check_output_file(tmp_path / (target + ".csv"), tmp_path / "in.csv", overwrite=False)
    assert list(tmp_path.iterdir()) == []
