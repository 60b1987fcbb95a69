"""Driver for the DDP tests: a tiny fine-tune or distillation under torchrun; each rank records the batches it
saw, its first dropout masks and its weights right after the last optimizer step (before anything is reloaded).

    python -m torch.distributed.run --nproc_per_node=2 tests/drivers/ddp_train.py STAGE MODEL TRAIN EVAL OUT \
        REPORT_DIR [no-sync]

STAGE is finetune (MODEL: a base model) or distill (MODEL: a teacher folder). With `no-sync` every DDP forward
runs under `no_sync()`, so gradients are never all-reduced: the ranks' weights must then come apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import pipelines.training.dropout  # noqa: E402
import pipelines.training.trainer  # noqa: E402
from distill.config import DistillConfig, StudentSettings  # noqa: E402
from distill.stage import run_distill  # noqa: E402
from finetune.stage import run_finetune  # noqa: E402
from pipelines.data import DataSettings  # noqa: E402
from pipelines.training.settings import TrainSettings  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

STEPS = 6
stage = sys.argv[1]
model, train, evaluation, out, report_dir = (Path(a) for a in sys.argv[2:7])
no_sync = sys.argv[7:] == ["no-sync"]
rank = int(os.environ["RANK"])
seen: list[str] = []
masks: list[str] = []


def digest(array) -> str:
    return hashlib.sha256(array.numpy().tobytes()).hexdigest()[:12]


collate = pipelines.training.trainer.PaddingCollator.__call__


def recording_collate(self, features):
    batch = collate(self, features)
    if "labels" in batch:
        seen.append(digest(batch["input_ids"]))
    return batch


pipelines.training.trainer.PaddingCollator.__call__ = recording_collate
keep_mask = pipelines.training.dropout.keep_mask


def recording_keep_mask(shape, p):
    mask = keep_mask(shape, p)
    if len(masks) < 3:
        masks.append(digest(mask))
    return mask


pipelines.training.dropout.keep_mask = recording_keep_mask
if no_sync:
    ddp_forward = torch.nn.parallel.DistributedDataParallel.forward

    def forward_without_sync(self, *args, **kwargs):
        with self.no_sync():
            return ddp_forward(self, *args, **kwargs)

    torch.nn.parallel.DistributedDataParallel.forward = forward_without_sync


class Record(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != STEPS:
            return
        weights = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            weights.update(name.encode())
            weights.update(tensor.detach().float().numpy().tobytes())
        (report_dir / f"rank{rank}.json").write_text(json.dumps({
            "world_size": args.world_size, "process_index": args.process_index, "weights": weights.hexdigest(),
            "batches": seen, "masks": masks, "global_step": state.global_step,
        }))


small = dict(max_steps=STEPS, batch_size=4, eval_strategy="no", num_threads=1, warmup=0, logging_steps=2)
if stage == "finetune":
    config = tiny_config(model, train, evaluation, out, **small)
    run_finetune(config, callbacks=[Record()])
else:
    config = DistillConfig(output_dir=str(out), teacher=str(model), student=StudentSettings(layers=1),
                           data=DataSettings(train_file=str(train), eval_file=str(evaluation)),
                           train=TrainSettings(learning_rate=1e-3, **small))
    run_distill(config, callbacks=[Record()])
