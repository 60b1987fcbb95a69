r"""Explain a classifier's predictions (SHAP, LIME, integrated gradients), measure faithfulness, write a report.

    python scripts/explain.py --model runs/sst2_minilm --input-file data/sst2/dev.tsv --text-column sentence \
        --num-examples 20 --output-dir runs/explain [--compare runs/sst2_student3] [--method shap,lime,ig]
    python scripts/explain.py --model runs/sst2_minilm --text "a gorgeous , witty , seductive movie ."
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import override_parser, overrides_from  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.errors import run_cli  # noqa: E402

OVERRIDES = {
    "output_dir": "output_dir", "model": "model", "compare": "compare", "input_file": "input_file",
    "text_column": "text_column", "text_pair_column": "text_pair_column", "label_column": "label_column",
    "num_examples": "num_examples", "select": "select", "method": "methods", "max_evals": "max_evals",
    "batch_size": "batch_size", "max_length": "max_length", "top_k": "top_k", "seed": "seed",
    "num_threads": "num_threads", "precision": "precision",
}


def main(argv: list[str] | None = None) -> int:
    parser = override_parser(__doc__, OVERRIDES)
    parser.add_argument("--text", action="append", help="a text to explain (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished report in --output-dir")
    args = parser.parse_args(argv)

    from explain.config import ExplainConfig

    overrides = overrides_from(args, OVERRIDES)
    overrides["texts"] = args.text
    config = load_config(ExplainConfig, args.config, overrides)
    from explain.stage import run_explain

    result = run_explain(config, overwrite=args.overwrite)
    for row in result.metrics["faithfulness"]:
        print(f"{row['model']:<20} {row['method']:<7} comprehensiveness {row['aopc_comprehensiveness']:+.4f}  "
              f"sufficiency {row['aopc_sufficiency']:+.4f}")
    print(f"report written to {result.output_dir / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
