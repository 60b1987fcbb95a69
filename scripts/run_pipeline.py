"""Run the whole pipeline: fine-tune -> distill -> export -> explain -> report, in one run folder.

    python scripts/run_pipeline.py --config configs/default.yaml [--from-stage distill] [--output-dir runs/mine]

Stages whose inputs are unchanged are skipped; a changed setting re-runs that stage and the ones after it;
an interrupted run continues from its last checkpoint when run again with the same command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chain.config import PipelineConfig, PipelineFlags  # noqa: E402
from pipelines.cli import parse, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    flags, config = parse(PipelineConfig, argv, __doc__, PipelineFlags)
    from chain.runner import run_pipeline

    began = time.perf_counter()
    result = run_pipeline(config, from_stage=flags.from_stage)
    for stage, info in result.stages.items():
        print(f"{stage:<9} {info['status']:<8} {info['seconds']:>7.1f} s")
    print(f"done in {time.perf_counter() - began:.0f} s; run folder {result.run_dir}")
    if result.report:
        print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
