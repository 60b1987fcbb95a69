"""Driver for the kill test: runs the pipeline and stops dead at a marker until the test kills it.

    python tests/drivers/pipeline_kill.py CONFIG.yaml STAGE STEP

When STAGE's trainer has saved the checkpoint of STEP, it prints "KILL-POINT" and waits to be killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from transformers import TrainerCallback  # noqa: E402

import chain.runner  # noqa: E402
from chain.config import PipelineConfig  # noqa: E402
from chain.runner import STAGES, StageSpec, run_pipeline  # noqa: E402
from pipelines.config import load_config  # noqa: E402

config_path, stage, step = sys.argv[1], sys.argv[2], int(sys.argv[3])


class KillPoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= step:
            print("KILL-POINT", flush=True)
            time.sleep(600)


def with_kill_point(spec: StageSpec) -> StageSpec:
    def run(config, resume=False, overwrite=False):
        return spec.run(config, resume=resume, overwrite=overwrite, callbacks=[KillPoint()])

    return StageSpec(spec.name, run, spec.config, spec.resumable)


chain.runner.STAGES = tuple(with_kill_point(s) if s.name == stage else s for s in STAGES)
run_pipeline(load_config(PipelineConfig, config_path))
