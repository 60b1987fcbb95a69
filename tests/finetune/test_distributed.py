"""DDP on CPU: a 2-process gloo fine-tune under torchrun syncs gradients, and only rank 0 writes the model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks_train_in_sync_and_one_folder_is_written(tiny_bert, sentiment_files, tmp_path):
    train, evaluation = sentiment_files
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={free_port()}", str(ROOT / "tests/drivers/ddp_finetune.py"),
         str(tiny_bert), str(train), str(evaluation), str(out), str(reports)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["process_index"] for r in ranks] == [0, 1]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 6
    assert ranks[0]["batches"] and ranks[0]["batches"] != ranks[1]["batches"]  # each rank saw other data
    assert ranks[0]["weights"] == ranks[1]["weights"]  # ... and still ends with the same weights
    assert (out / "manifest.json").is_file() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no half-written staging
    assert len(list(out.glob("model*.safetensors"))) == 1
