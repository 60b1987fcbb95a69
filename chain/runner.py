"""Chains the stages (fine-tune -> distill -> export -> explain -> report) in one run folder from a table,
skipping the ones whose inputs are unchanged.

Each stage gets a key: a hash of its own config, the data files' contents and the key of the stage before it.
A stage whose folder is complete (has its manifest) and whose key is unchanged is skipped; a changed key
re-runs it and so every stage after it; `from_stage` forces a stage and the ones after it. A training stage
that was interrupted continues from its last checkpoint when its key is unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.config import STAGE_NAMES, PipelineConfig
from chain.report import REPORT, run_report
from distill.stage import run_distill
from explain.stage import run_explain
from export.stage import run_export
from finetune.stage import run_finetune
from pipelines import artifacts
from pipelines.config import to_dict
from pipelines.data import prepare_data
from pipelines.errors import UserError
from pipelines.lm_data import prepare_lm_data
from pipelines.models import resolve_model
from pipelines.stage import Stage

log = logging.getLogger(__name__)
STATE = "pipeline_state.json"


@dataclass(frozen=True)
class StageSpec:
    """A row of the chain: the stage's function, how its config comes from the pipeline config, and whether an
    interrupted run of it can resume."""

    name: str
    run: Stage
    config: Callable[[PipelineConfig], Any]
    resumable: bool = False


STAGES = (
    StageSpec("finetune", run_finetune, PipelineConfig.finetune_config, resumable=True),
    StageSpec("distill", run_distill, PipelineConfig.distill_config, resumable=True),
    StageSpec("export", run_export, PipelineConfig.export_config),
    StageSpec("explain", run_explain, PipelineConfig.explain_config),
    StageSpec("report", run_report, PipelineConfig.report_config),
)
assert tuple(spec.name for spec in STAGES) == STAGE_NAMES


@dataclass
class PipelineResult:
    run_dir: Path
    report: Path | None
    stages: dict[str, dict] = field(default_factory=dict)  # stage -> {"status": ran|skipped, "seconds": s}


def data_digest(config: PipelineConfig) -> str:
    files = [config.data.train_file] + ([config.data.eval_file] if config.data.eval_file else [])
    for path in files:
        if not path or not Path(path).exists():
            raise UserError(f"data file {path} does not exist" if path else "no training file: set data.train_file")
    return artifacts.config_hash({path: artifacts.file_digest(Path(path)) for path in files})


def check_inputs(config: PipelineConfig) -> None:
    """Refuse bad data, a missing model or an unwritable run folder before anything is written."""
    if "finetune" in config.stages:
        resolve_model(config.finetune.model.name)
        if config.task == "causal-lm":
            prepare_lm_data(config.data, seed=config.finetune.train.seed)
        else:
            prepare_data(config.data, seed=config.finetune.train.seed)
    run_dir = Path(config.output_dir)
    if not run_dir.exists():
        artifacts.probe_writable(run_dir)


def run_pipeline(config: PipelineConfig, from_stage: str | None = None,
                 on_stage: Callable[[str, str], None] | None = None) -> PipelineResult:
    """Run the configured stages in order; see the module docstring for skipping and resuming."""
    if from_stage is not None and from_stage not in config.stages:
        raise UserError(f"--from {from_stage}: not one of this run's stages ({', '.join(config.stages)})")
    run_dir = Path(config.output_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} is a file, not a folder")
    upstream = data_digest(config)
    check_inputs(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    result = PipelineResult(run_dir=run_dir, report=None)
    forced = False
    for spec in (s for s in STAGES if s.name in config.stages):
        stage_config = spec.config(config)
        key = artifacts.config_hash({"settings": to_dict(stage_config), "upstream": upstream})
        forced = forced or spec.name == from_stage
        folder = config.stage_dir(spec.name)
        complete = (folder / artifacts.MANIFEST).is_file()
        recorded = state.get(spec.name, {})
        if complete and not forced and recorded.get("key") == key:
            log.info("%s: unchanged, skipped", spec.name)
            result.stages[spec.name] = {"status": "skipped", "seconds": 0.0}
            upstream = key
            continue
        forced = True  # a stage that runs makes every later one run too
        unfinished = folder.is_dir() and (folder / artifacts.RUN_MARKER).is_file() and not complete
        resume = unfinished and recorded.get("started") == key and spec.resumable
        overwrite = folder.is_dir() and any(folder.iterdir()) and not resume
        state[spec.name] = {"started": key}
        artifacts.write_json(state_path, state)
        if on_stage:
            on_stage(spec.name, "resuming" if resume else "running")
        log.info("%s: %s", spec.name, "resuming from its last checkpoint" if resume else "running")
        began = time.perf_counter()
        spec.run(stage_config, resume=resume, overwrite=overwrite)
        seconds = time.perf_counter() - began
        state[spec.name] = {"key": key, "started": key, "seconds": round(seconds, 3)}
        artifacts.write_json(state_path, state)
        result.stages[spec.name] = {"status": "ran", "seconds": seconds}
        upstream = key
    report = config.stage_dir("report") / REPORT
    result.report = report if report.is_file() else None
    return result
