"""Chains the stages (fine-tune -> distill -> export -> explain -> report) in one run folder, skipping unchanged ones.

Each stage gets a key: a hash of its own settings, the data files' contents and the keys of the stages
before it. A stage whose folder is complete and whose key is unchanged is skipped; a changed key re-runs
it (and so every stage after it); `from_stage` forces a stage and the ones after it. A stage that was
interrupted continues from its last checkpoint when its settings are unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import artifacts
from pipelines.config import to_dict
from pipelines.data import file_digest
from pipelines.errors import UserError
from pipelines.pipeline_config import PipelineConfig

log = logging.getLogger(__name__)
STATE = "pipeline_state.json"


@dataclass
class PipelineResult:
    run_dir: Path
    report: Path | None
    stages: dict[str, dict] = field(default_factory=dict)  # stage -> {"status": ran|skipped, "seconds": s}


def data_digest(config: PipelineConfig) -> str:
    files = [config.data.train_file] + ([config.data.eval_file] if config.data.eval_file else [])
    for path in files:
        if not Path(path).exists():
            raise UserError(f"data file {path} does not exist")
    return artifacts.config_hash({path: file_digest(Path(path)) for path in files})


def check_inputs(config: PipelineConfig) -> None:
    """Refuse bad data, a missing model or an unwritable run folder before anything is written."""
    if "finetune" in config.stages:
        from pipelines.data import prepare_data
        from pipelines.models import resolve_model

        resolve_model(config.model.name)
        prepare_data(config.data, seed=config.train.seed)
    run_dir = Path(config.run_dir)
    if not run_dir.exists():
        artifacts.probe_writable(run_dir)


def stage_settings(config: PipelineConfig, stage: str) -> dict:
    """What a stage's output depends on, apart from the data and the stages before it."""
    if stage == "finetune":
        return to_dict(config.finetune_config())
    if stage == "distill":
        settings = to_dict(config.distill_config())
        if config.distill.extra_teachers:  # retrained extra teachers re-run it (the teacher is the stage upstream)
            from distill.teacher_logits import teacher_identity

            settings["extra_teacher_weights"] = [teacher_identity(Path(p)) for p in config.distill.extra_teachers]
        return settings
    if stage == "explain":
        return to_dict(config.explain_config())
    if stage == "export":
        return {"models": {k: str(v) for k, v in config.export_models().items()},
                "settings": to_dict(config.export_settings())}
    return {"stage": "report"}


def _run_stage(config: PipelineConfig, stage: str, resume: bool, overwrite: bool) -> None:
    if stage == "finetune":
        from pipelines.finetune import run_finetune

        run_finetune(config.finetune_config(), resume=resume, overwrite=overwrite)
    elif stage == "distill":
        from distill.stage import run_distill

        run_distill(config.distill_config(), resume=resume, overwrite=overwrite)
    elif stage == "explain":
        from explain.stage import run_explain

        run_explain(config.explain_config(), overwrite=overwrite)
    elif stage == "export":
        from pipelines.data import prepare_data
        from pipelines.export_stage import run_export_stage

        run_export_stage(config.export_models(), config.stage_dir("export"),
                         prepare_data(config.data, seed=config.train.seed), config.export_settings(),
                         overwrite=overwrite)
    else:
        write_report(config)


def write_report(config: PipelineConfig) -> Path:
    from pipelines.data import prepare_data
    from pipelines.report import build_report

    run_dir = Path(config.run_dir)
    data = prepare_data(config.data, seed=config.train.seed)
    html = build_report(run_dir, data, title=run_dir.name)
    target = run_dir / "report.html"
    artifacts.write_text(target, html)
    return target


def run_pipeline(config: PipelineConfig, from_stage: str | None = None,
                 on_stage: Callable[[str, str], None] | None = None) -> PipelineResult:
    """Run the configured stages in order; see the module docstring for skipping and resuming."""
    if from_stage is not None and from_stage not in config.stages:
        raise UserError(f"--from {from_stage}: not one of this run's stages ({', '.join(config.stages)})")
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} is a file, not a folder")
    digest = data_digest(config)
    check_inputs(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    result = PipelineResult(run_dir=run_dir, report=None)
    upstream, forced = digest, False
    for stage in config.stages:
        key = artifacts.config_hash({"settings": stage_settings(config, stage), "upstream": upstream})
        forced = forced or stage == from_stage
        folder = config.stage_dir(stage)
        complete = (run_dir / "report.html").is_file() if stage == "report" else (folder / artifacts.MANIFEST).is_file()
        recorded = state.get(stage, {})
        if complete and not forced and recorded.get("key") == key:
            log.info("%s: unchanged, skipped", stage)
            result.stages[stage] = {"status": "skipped", "seconds": 0.0}
            upstream = key
            continue
        forced = True  # a stage that runs makes every later one run too
        unfinished = folder.is_dir() and (folder / artifacts.RUN_MARKER).is_file() and not complete
        resume = unfinished and recorded.get("started") == key and stage in ("finetune", "distill")
        overwrite = folder.is_dir() and any(folder.iterdir()) and not resume
        state[stage] = {"started": key}
        artifacts.write_json(state_path, state)
        if on_stage:
            on_stage(stage, "resuming" if resume else "running")
        log.info("%s: %s", stage, "resuming from its last checkpoint" if resume else "running")
        began = time.perf_counter()
        _run_stage(config, stage, resume=resume, overwrite=overwrite)
        seconds = time.perf_counter() - began
        state[stage] = {"key": key, "started": key, "seconds": round(seconds, 3)}
        artifacts.write_json(state_path, state)
        result.stages[stage] = {"status": "ran", "seconds": seconds}
        upstream = key
    report = run_dir / "report.html"
    result.report = report if report.is_file() else None
    return result
