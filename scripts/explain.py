"""Explain a classifier's predictions (SHAP, LIME, integrated gradients), measure faithfulness, write a report.

    python scripts/explain.py --model runs/sst2_minilm --output-dir runs/explain [--compare runs/sst2_student3] \\
        [--methods shap lime ig] [--num-examples 20]
    python scripts/explain.py --model runs/sst2_minilm --input-file data/sst2/dev.tsv --text-column sentence
    python scripts/explain.py --model runs/sst2_minilm --texts "a gorgeous , witty , seductive movie ."

Without --input-file or --texts it explains rows of the eval split the model was trained with.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explain.config import ExplainConfig  # noqa: E402
from pipelines.cli import parse, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    flags, config = parse(ExplainConfig, argv, __doc__)
    from explain.stage import run_explain

    result = run_explain(config, overwrite=flags.overwrite)
    for row in result.metrics["faithfulness"]:
        print(f"{row['model']:<20} {row['method']:<7} comprehensiveness {row['aopc_comprehensiveness']:+.4f}  "
              f"sufficiency {row['aopc_sufficiency']:+.4f}")
    print(f"report written to {result.output / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
