"""DDP on CPU: two gloo ranks under torchrun, fed different batches, end the last optimizer step with the same
weights because gradients are all-reduced (and with different ones when they are not), draw different dropout
masks, and only rank 0 writes the output folder; for fine-tuning and for distillation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from finetune.stage import run_finetune
from tests.conftest import ROOT, tiny_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def teacher(tiny_bert, tmp_path_factory, request):
    """A tiny fine-tuned teacher for the distillation runs."""
    from tests.conftest import sentiment_rows, write_csv

    folder = tmp_path_factory.mktemp("ddp_teacher")
    train = write_csv(folder / "train.csv", sentiment_rows(64, seed=1))
    evaluation = write_csv(folder / "eval.csv", sentiment_rows(16, seed=2))
    run_finetune(tiny_config(tiny_bert, train, evaluation, folder / "teacher", max_steps=4, eval_strategy="no"))
    return folder / "teacher"


@pytest.mark.parametrize("stage", ["finetune", "distill"])
@pytest.mark.parametrize("sync", [True, False], ids=["all-reduce", "no-sync"])
def test_two_ranks_train_in_sync_on_different_data(stage, sync, tiny_bert, sentiment_files, tmp_path, request):
    train, evaluation = sentiment_files
    model = tiny_bert if stage == "finetune" else request.getfixturevalue("teacher")
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={free_port()}", str(ROOT / "tests/drivers/ddp_train.py"), stage,
         str(model), str(train), str(evaluation), str(out), str(reports), *([] if sync else ["no-sync"])],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["process_index"] for r in ranks] == [0, 1]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 6
    assert ranks[0]["batches"] and ranks[0]["batches"] != ranks[1]["batches"]  # each rank saw other data
    assert len(ranks[0]["masks"]) == 3 and ranks[0]["masks"] != ranks[1]["masks"]  # and other dropout masks
    if sync:  # ... and still ends its last step with the same weights
        assert ranks[0]["weights"] == ranks[1]["weights"]
    else:  # without the all-reduce the same check sees them apart: it can fail
        assert ranks[0]["weights"] != ranks[1]["weights"]
    assert (out / "manifest.json").is_file() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no half-written staging
    assert len(list(out.glob("model*.safetensors"))) == 1
