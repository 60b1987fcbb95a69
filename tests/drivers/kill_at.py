"""Driver for the kill-point tests: runs the pipeline and SIGKILLs itself at a named point.

    python tests/drivers/kill_at.py CONFIG.yaml POINT

Points: train-step (after step 6 of fine-tuning, the step-4 checkpoint written), checkpoint-save (inside the
step-8 checkpoint, after the weights and optimizer, before the trainer state), model-save (fine-tuned model
written to staging, not yet published), teacher-logits (while computing the teacher's logits), explain (while
explaining the second model). It prints "KILL-POINT <point>" and kills itself with SIGKILL, so nothing gets to
clean up.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from transformers import Trainer, TrainerCallback  # noqa: E402

import chain.runner  # noqa: E402
import distill.teacher_logits  # noqa: E402
import explain.stage  # noqa: E402
import finetune.stage  # noqa: E402
from chain.config import PipelineConfig  # noqa: E402
from chain.runner import STAGES, StageSpec, run_pipeline  # noqa: E402
from pipelines.config import load_config  # noqa: E402

config_path, point = sys.argv[1], sys.argv[2]


def die() -> None:
    print(f"KILL-POINT {point}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if point == "train-step":
    class KillAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                die()

    def finetune_with_kill(config, resume=False, overwrite=False):
        return finetune.stage.run_finetune(config, resume=resume, overwrite=overwrite, callbacks=[KillAtStep()])

    chain.runner.STAGES = tuple(StageSpec(s.name, finetune_with_kill, s.config, s.resumable) if s.name == "finetune"
                                else s for s in STAGES)
elif point == "checkpoint-save":
    original_rng = Trainer._save_rng_state

    def save_rng_then_die(self, output_dir):
        if self.state.global_step == 8 and "finetune" in str(output_dir):
            die()
        return original_rng(self, output_dir)

    Trainer._save_rng_state = save_rng_then_die
elif point == "model-save":
    def card_then_die(*args, **kwargs):
        die()

    finetune.stage.finetune_card = card_then_die
elif point == "teacher-logits":
    def forward_then_die(*args, **kwargs):
        die()

    distill.teacher_logits.dataset_logits = forward_then_die
elif point == "explain":
    original_explain = explain.stage.explain_texts
    calls = []

    def explain_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            die()
        return original_explain(*args, **kwargs)

    explain.stage.explain_texts = explain_then_die
else:
    sys.exit(f"unknown kill point {point}")

run_pipeline(load_config(PipelineConfig, config_path))
print("finished without reaching the kill point", flush=True)
