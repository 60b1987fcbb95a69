r"""Label a file with a trained classifier: each row comes back in order with label, score and class probabilities.

    python scripts/predict.py --model runs/sst2_minilm --input-file data/sst2/dev.tsv --text-column sentence \
        --output-file runs/dev_predictions.csv [--label-column label] [--top-k 2] [--batch-size 64]
    python scripts/predict.py --model runs/export/student --input-file new.jsonl --output-file labelled.parquet

--model is any folder this project writes: a fine-tuned teacher, a distilled student, or an ONNX export
(its int8 copy is used when present; --variant fp32 picks the float one). Input and output: csv, tsv, jsonl,
parquet. Columns named label/score in the input are kept; the predictions are then named predicted_*.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import add_common_flags  # noqa: E402
from pipelines.errors import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (PyTorch or ONNX export)")
    parser.add_argument("--input-file", required=True)
    parser.add_argument("--output-file", required=True)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--text-pair-column")
    parser.add_argument("--label-column", help="gold labels in the input: print the accuracy")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=1, help="also write the k best labels and their scores")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text; longer texts are truncated")
    parser.add_argument("--num-threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--variant", default="auto", choices=("auto", "fp32", "int8"), help="ONNX copy to use")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="PyTorch models: bf16 autocast (auto: where the CPU runs bf16 natively)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--no-progress", action="store_true")
    add_common_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from pipelines.predict import PredictSettings, run_predict

    settings = PredictSettings(
        model=args.model, input_file=args.input_file, output_file=args.output_file, text_column=args.text_column,
        text_pair_column=args.text_pair_column, label_column=args.label_column, batch_size=args.batch_size,
        top_k=args.top_k, max_length=args.max_length, num_threads=args.num_threads, variant=args.variant,
        overwrite=args.overwrite, progress=not args.no_progress, precision=args.precision,
    )
    result = run_predict(settings)
    line = (f"labelled {result.rows} rows with the {result.backend} model in {result.seconds:.2f} s "
            f"({result.rows_per_second:.0f} rows/s)")
    if result.accuracy is not None:
        line += f"; accuracy against '{args.label_column}': {result.accuracy:.4f}"
    print(line)
    print(f"wrote {result.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
