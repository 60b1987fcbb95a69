"""SHAP speed and fidelity: our batched predictor against shap.Explainer over a transformers pipeline.

    python benchmarks/bench_explain.py [--model runs/sst2_minilm --sentences 50 --max-evals 500]

Both explain the same SST-2 dev sentences with the Partition explainer, a Text masker on the model's
tokenizer and the same max_evals, in one process, one after the other:

- baseline: shap.Explainer(transformers.pipeline("text-classification", model=DIR, top_k=None)), called as
  its documentation shows;
- ours: explain.methods.explain_shap over explain.predictor.Predictor (deduplicated, length-sorted batches,
  dynamic padding, inference_mode), in fp32 and with bf16 autocast (the default on CPUs with native bf16).
Both get the same max_evals and shap batch_size (512): the Partition explainer's search depends on the
batch size, so equal settings make the attributions comparable (they differ only by float noise).

Reports sentences per second of each, the speed-up, the per-sentence Spearman correlation of the
predicted class's attributions (mean and min) and the largest absolute attribution difference.
Prints a table and writes benchmarks/results/explain.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.agreement import spearman  # noqa: E402
from explain.methods import explain_shap  # noqa: E402
from explain.predictor import Predictor  # noqa: E402
from pipelines.models import load_trained_classifier  # noqa: E402
from pipelines.tables import read_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "runs" / "sst2_minilm"))
    parser.add_argument("--sentences", type=int, default=50)
    parser.add_argument("--max-evals", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    import shap
    import torch
    import transformers

    texts = [str(t) for t in read_table(ROOT / "data/sst2/dev.tsv")["sentence"]][: args.sentences]

    pipe = transformers.pipeline("text-classification", model=args.model, top_k=None, device="cpu")
    baseline_explainer = shap.Explainer(pipe)
    began = time.perf_counter()
    baseline = baseline_explainer(texts, max_evals=args.max_evals, batch_size=args.batch_size)
    baseline_seconds = time.perf_counter() - began

    model, tokenizer, labels = load_trained_classifier(args.model)
    baseline_order = [baseline.output_names.index(name) if baseline.output_names is not None else i
                      for i, name in enumerate(labels)]
    variants = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(model, tokenizer, batch_size=args.batch_size, precision=precision)
        began = time.perf_counter()
        ours = explain_shap(predictor, texts, max_evals=args.max_evals, batch_size=args.batch_size)
        seconds = time.perf_counter() - began
        correlations, max_diff, token_mismatch = [], 0.0, 0
        for i, attribution in enumerate(ours):
            theirs = np.asarray(baseline.values[i])[:, baseline_order]
            if list(map(str, baseline.data[i])) != attribution.tokens:
                token_mismatch += 1
                continue
            max_diff = max(max_diff, float(np.abs(theirs - attribution.values).max()))
            real = [j for j, t in enumerate(attribution.tokens) if t.strip()]
            correlations.append(spearman(attribution.values[real, attribution.predicted],
                                         theirs[real, attribution.predicted]))
        variants[precision] = {
            "seconds": seconds, "sentences_per_second": len(texts) / seconds, "speedup": baseline_seconds / seconds,
            "spearman_mean": float(np.mean(correlations)), "spearman_min": float(np.min(correlations)),
            "max_abs_diff": max_diff, "token_mismatches": token_mismatch, "model_calls": predictor.calls,
            "unique_texts_run": predictor.rows,
        }
    default = "bf16" if Predictor(model, tokenizer, precision="auto").bf16 else "fp32"
    headline = variants[default]
    result = {
        "speedup": headline["speedup"],
        "spearman_mean": headline["spearman_mean"],
        "spearman_min": headline["spearman_min"],
        "max_abs_diff": headline["max_abs_diff"],
        "ours_precision": default,
        "sentences": len(texts),
        "max_evals": args.max_evals,
        "baseline": {"seconds": baseline_seconds, "sentences_per_second": len(texts) / baseline_seconds},
        "ours": variants,
        "setup": {"model": str(Path(args.model).relative_to(ROOT)) if Path(args.model).is_relative_to(ROOT)
                  else args.model, "shap": shap.__version__, "transformers": transformers.__version__,
                  "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
                  "batch_size": args.batch_size},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "explain.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'variant':<12} {'seconds':>8} {'sent/s':>7} {'speed-up':>9} {'spearman':>9} {'max|diff|':>10}")
    print(f"{'baseline':<12} {baseline_seconds:>8.1f} {len(texts) / baseline_seconds:>7.2f}")
    for name, row in variants.items():
        print(f"{'ours ' + name:<12} {row['seconds']:>8.1f} {row['sentences_per_second']:>7.2f} "
              f"{row['speedup']:>8.2f}x {row['spearman_mean']:>9.4f} {row['max_abs_diff']:>10.2e}")
    print(f"wrote {RESULTS / 'explain.json'}")


if __name__ == "__main__":
    main()
