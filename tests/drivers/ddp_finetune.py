"""Driver for the DDP test: a tiny fine-tune under torchrun; each rank records what it saw and its weights.

    python -m torch.distributed.run --nproc_per_node=2 tests/drivers/ddp_finetune.py MODEL TRAIN EVAL OUT REPORT_DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from transformers import TrainerCallback  # noqa: E402

import pipelines.training.trainer  # noqa: E402
from finetune.stage import run_finetune  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

model, train, evaluation, out, report_dir = (Path(a) for a in sys.argv[1:6])
rank = int(os.environ["RANK"])
seen: list[str] = []
collate = pipelines.training.trainer.PaddingCollator.__call__


def recording_collate(self, features):
    batch = collate(self, features)
    if "labels" in batch and len(features) == 4:  # training batches (eval batches are 16)
        seen.append(hashlib.sha256(batch["input_ids"].numpy().tobytes()).hexdigest()[:12])
    return batch


pipelines.training.trainer.PaddingCollator.__call__ = recording_collate


class Record(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().numpy().tobytes())
        (report_dir / f"rank{rank}.json").write_text(json.dumps({
            "world_size": args.world_size, "process_index": args.process_index, "weights": digest.hexdigest(),
            "batches": seen, "global_step": state.global_step,
        }))


config = tiny_config(model, train, evaluation, out, max_steps=6, batch_size=4, eval_steps=3)
config.train.num_threads = 1
run_finetune(config, callbacks=[Record()])
