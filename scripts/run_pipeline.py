"""Run the whole pipeline: fine-tune -> distill -> export -> explain -> report, in one run folder.

    python scripts/run_pipeline.py --config configs/default.yaml [--from distill] [--run-dir runs/mine]

Stages whose inputs are unchanged are skipped; a changed setting re-runs that stage and the ones after it;
an interrupted run continues from its last checkpoint when run again with the same command.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import add_common_flags  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.errors import run_cli  # noqa: E402
from pipelines.pipeline_config import STAGES, PipelineConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/default.yaml", help="pipeline YAML")
    parser.add_argument("--run-dir", help="overrides run_dir")
    parser.add_argument("--from", dest="from_stage", choices=STAGES, help="force this stage and the ones after it")
    add_common_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(PipelineConfig, args.config, {"run_dir": args.run_dir})

    from pipelines.runner import run_pipeline

    began = time.perf_counter()
    result = run_pipeline(config, from_stage=args.from_stage)
    for stage, info in result.stages.items():
        print(f"{stage:<9} {info['status']:<8} {info['seconds']:>7.1f} s")
    print(f"done in {time.perf_counter() - began:.0f} s; run folder {result.run_dir}")
    if result.report:
        print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
