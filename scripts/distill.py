"""Distill a fine-tuned teacher folder into a smaller, faster student.

    python scripts/distill.py --teacher runs/sst2_minilm --student.layers 3 --output-dir runs/student3
    python scripts/distill.py --config configs/distill_sst2.yaml [flags override the YAML]

Without --data.train-file the student learns on the data the teacher was trained on (its data.json).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill.config import DistillConfig  # noqa: E402
from pipelines.cli import TrainingRunFlags, parse, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    flags, config = parse(DistillConfig, argv, __doc__, TrainingRunFlags)
    from distill.stage import run_distill

    result = run_distill(config, resume=flags.resume, overwrite=flags.overwrite)
    if result.metrics:
        m = result.metrics
        print(f"student accuracy {m['student']['dev_accuracy']:.4f} (teacher {m['teacher']['dev_accuracy']:.4f}), "
              f"retention {m['retention']:.4f}, agreement {m['agreement']:.4f}, speed-up {m['speedup_b32']:.2f}x "
              f"at batch 32")
        print(f"student written to {result.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
