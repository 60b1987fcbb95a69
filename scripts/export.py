r"""Export a trained classifier to ONNX, with an int8 copy, behind a parity gate.

    python scripts/export.py --model runs/sst2_minilm --output-dir runs/sst2_minilm_onnx [--quantize int8]
    python scripts/export.py --model runs/student --output-dir runs/student_onnx --eval-file dev.tsv \
        --text-column sentence --label-column label

The gate runs on the model's own eval file (from its config.yaml) or on --eval-file: the fp32 copy's logits
must match PyTorch within --max-logit-diff; the int8 copy may lose at most --max-accuracy-drop of accuracy
(or, without labels, must agree with PyTorch on --min-agreement of the rows). A failing export is refused with
the figures unless --force. Figures go to export_metrics.json and the model card.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.cli import add_common_flags  # noqa: E402
from pipelines.errors import UserError, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a PyTorch model folder this project wrote")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--quantize", default="int8", choices=("int8", "none"))
    parser.add_argument("--eval-file", help="parity set (default: the model's own eval file)")
    parser.add_argument("--text-column")
    parser.add_argument("--text-pair-column")
    parser.add_argument("--label-column")
    parser.add_argument("--max-logit-diff", type=float, default=1e-4)
    parser.add_argument("--max-accuracy-drop", type=float, default=0.005, help="int8 vs PyTorch, e.g. 0.005")
    parser.add_argument("--min-agreement", type=float, default=0.97, help="int8 vs PyTorch when there are no labels")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--num-threads", type=int)
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    parser.add_argument("--all-recipes", action="store_true", help="measure every int8 recipe, not just up to the "
                        "first that passes")
    parser.add_argument("--force", action="store_true", help="keep an export that fails the gate")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished export in --output-dir")
    add_common_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipelines").setLevel(logging.INFO)  # onnxruntime's quantizer logs every tensor at INFO

    from pipelines.backends import folder_kind
    from pipelines.export import ExportSettings, default_parity_file, parity_set_from_file, run_export

    model_dir = Path(args.model)
    folder_kind(model_dir)
    recorded = default_parity_file(model_dir) or {}
    eval_file = args.eval_file or recorded.get("path")
    if not eval_file:
        raise UserError(f"{model_dir} records no eval file; pass --eval-file (and --text-column) for the parity check")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    label_names = [config.id2label[i] for i in range(config.num_labels)]
    parity = parity_set_from_file(
        eval_file,
        args.text_column or recorded.get("text_column", "text"),
        args.text_pair_column or recorded.get("text_pair_column"),
        args.label_column or recorded.get("label_column", "label"),
        label_names,
    )
    settings = ExportSettings(max_logit_diff=args.max_logit_diff, quantize=args.quantize,
                              max_accuracy_drop=args.max_accuracy_drop, min_agreement=args.min_agreement,
                              measure_latency=not args.no_latency, try_all_int8=args.all_recipes,
                              num_threads=args.num_threads, max_length=args.max_length)
    result = run_export(model_dir, args.output_dir, parity, settings, overwrite=args.overwrite, force=args.force)
    for key in ("pytorch", "onnx_fp32", "onnx_int8"):
        if key in result.metrics:
            m = result.metrics[key]
            accuracy = "n/a" if m["dev_accuracy"] is None else f"{m['dev_accuracy']:.4f}"
            latency = f"{m['latency_b1_ms']:.2f} ms b1" if "latency_b1_ms" in m else ""
            print(f"{key:<10} {m['size_mb']:>7.1f} MB  accuracy {accuracy}  agreement {m['label_agreement']:.4f}  "
                  f"max logit diff {m['max_abs_logit_diff']:.2e}  {latency}")
    print(f"wrote {result.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
