"""Export a trained classifier to ONNX, with an int8 copy, behind a parity gate.

    python scripts/export.py --model runs/sst2_minilm --output-dir runs/sst2_minilm_onnx [--quantize none]
    python scripts/export.py --model runs/student --output-dir runs/student_onnx --eval-file dev.tsv \\
        --text-column sentence --label-column label

The gate runs on the eval split the model was trained with (its data.json) or on --eval-file: the fp32 copy's
logits must match PyTorch within --max-logit-diff; the int8 copy may lose at most --max-accuracy-drop of
accuracy (or, without labels, must agree with PyTorch on --min-agreement of the rows). A failing export is
refused with the figures unless --force. Figures go to export_metrics.json and the model card.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.config import ExportConfig  # noqa: E402
from pipelines.cli import parse, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    flags, config = parse(ExportConfig, argv, __doc__)
    logging.getLogger("root").setLevel(logging.WARNING)  # onnxruntime's quantizer logs every tensor at INFO
    from export.stage import run_export

    result = run_export(config, overwrite=flags.overwrite)
    for key in ("pytorch", "onnx_fp32", "onnx_int8"):
        if key in result.metrics:
            m = result.metrics[key]
            accuracy = "n/a" if m["dev_accuracy"] is None else f"{m['dev_accuracy']:.4f}"
            latency = f"{m['latency_b1_ms']:.2f} ms b1" if "latency_b1_ms" in m else ""
            print(f"{key:<10} {m['size_mb']:>7.1f} MB  accuracy {accuracy}  agreement {m['label_agreement']:.4f}  "
                  f"max logit diff {m['max_abs_logit_diff']:.2e}  {latency}")
    print(f"wrote {result.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
