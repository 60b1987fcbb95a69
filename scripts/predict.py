"""Label a file with a trained classifier: each row comes back in order with label, score and class probabilities.

    python scripts/predict.py --model runs/sst2_minilm --input-file data/sst2/dev.tsv --text-column sentence \\
        --output-file runs/dev_predictions.csv [--label-column label] [--top-k 2] [--batch-size 64]
    python scripts/predict.py --model runs/export/student --input-file new.jsonl --output-file labelled.parquet

--model is any folder this project writes: a fine-tuned teacher, a distilled student, or an ONNX export
(its int8 copy is used when present; --variant fp32 picks the float one). Input and output: csv, tsv, jsonl,
parquet. Columns named label/score in the input are kept; the predictions are then named predicted_*.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import parse, run_cli  # noqa: E402
from predict.config import PredictConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    flags, config = parse(PredictConfig, argv, __doc__)
    from predict.stage import run_predict

    result = run_predict(config, overwrite=flags.overwrite)
    m = result.metrics
    line = (f"labelled {m['rows']} rows with the {m['backend']} model in {m['seconds']:.2f} s "
            f"({m['rows_per_second'] or float('inf'):.0f} rows/s)")
    if m["accuracy"] is not None:
        line += f"; accuracy against '{config.label_column}': {m['accuracy']:.4f}"
    print(line)
    print(f"wrote {result.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, log_level=logging.WARNING))
