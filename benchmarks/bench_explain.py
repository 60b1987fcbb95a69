"""SHAP speed and fidelity: our batched predictor against shap.Explainer over a transformers pipeline.

    python benchmarks/bench_explain.py [--model runs/sst2_minilm --sentences 20 --max-evals 500 --rounds 3]

Every arm explains the same SST-2 dev sentences with the Partition explainer, a Text masker on the model's
tokenizer and the same max_evals (the attribution budget), in one process:

- like_for_like (the gain of the method): ours in fp32 (explain.methods.explain_shap over
  explain.predictor.Predictor: deduplicated, length-sorted batches, dynamic padding, inference_mode) against
  shap.Explainer(transformers.pipeline(..., batch_size=B)) called with batch_size=B, the tuned baseline: both
  fp32, the same batch size B (the Partition explainer's search depends on it, so the attributions agree up to
  float noise), the same torch threads, each warmed up on the same two sentences, timed in ABBA rounds.
- defaults (what a user sees): ours with the explain stage's defaults (precision auto: bf16 autocast where the
  CPU has native bf16; batch 256) against shap.Explainer(pipeline) called as shap's documentation shows (the
  pipeline's and the explainer's default batch sizes), warmed up and interleaved the same way.

Each comparison reports the ratio of every round's pair with its spread, and the Spearman correlation of the
predicted class's token attributions between the two arms (mean and min over sentences).
Prints a table and writes benchmarks/results/explain.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import pair_ratios, provenance, timed_abba  # noqa: E402
from explain.agreement import spearman  # noqa: E402
from explain.config import ExplainConfig  # noqa: E402
from explain.methods import explain_shap  # noqa: E402
from explain.predictor import Predictor  # noqa: E402
from pipelines.inference import use_bf16  # noqa: E402
from pipelines.models import load_trained_classifier  # noqa: E402
from pipelines.tables import read_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WARMUP_SENTENCES = 2


def shap_over_pipeline(model_dir: str, max_evals: int, batch_size: int | None) -> Callable:
    """shap.Explainer over a text-classification pipeline; batch_size None leaves both at their defaults."""
    import shap
    import transformers

    options = {"batch_size": batch_size} if batch_size else {}
    pipe = transformers.pipeline("text-classification", model=model_dir, top_k=None, device="cpu", **options)
    explainer = shap.Explainer(pipe)
    return lambda texts: explainer(texts, max_evals=max_evals, silent=True, **options)


def ours(model, tokenizer, max_evals: int, batch_size: int, precision: str) -> Callable:
    predictor = Predictor(model, tokenizer, batch_size=batch_size, precision=precision)
    return lambda texts: explain_shap(predictor, texts, max_evals=max_evals, batch_size=batch_size)


def agreement(our_attributions, explanation, labels: list[str]) -> dict:
    """Spearman of the predicted class's token attributions, ours against shap's, sentence by sentence."""
    order = [explanation.output_names.index(name) if explanation.output_names is not None else i
             for i, name in enumerate(labels)]
    correlations, max_diff, mismatched = [], 0.0, 0
    for i, attribution in enumerate(our_attributions):
        theirs = np.asarray(explanation.values[i])[:, order]
        if list(map(str, explanation.data[i])) != attribution.tokens:
            mismatched += 1
            continue
        max_diff = max(max_diff, float(np.abs(theirs - attribution.values).max()))
        real = [j for j, t in enumerate(attribution.tokens) if t.strip()]
        correlations.append(spearman(attribution.values[real, attribution.predicted],
                                     theirs[real, attribution.predicted]))
    return {"spearman_mean": float(np.mean(correlations)), "spearman_min": float(np.min(correlations)),
            "max_abs_diff": max_diff, "token_mismatches": mismatched}


def compare(arms: dict[str, Callable], texts: list[str], rounds: int, labels: list[str]) -> dict:
    """Warm both arms up, time them in ABBA rounds, and compare what they attributed."""
    seconds, outputs = timed_abba(arms, texts, texts[:WARMUP_SENTENCES], rounds)
    return {
        "speedup": pair_ratios(seconds, "ours", "shap_pipeline"),
        "sentences_per_second": {name: len(texts) / statistics.median(times) for name, times in seconds.items()},
        "seconds": seconds,
        **agreement(outputs["ours"], outputs["shap_pipeline"], labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "runs" / "sst2_minilm"))
    parser.add_argument("--sentences", type=int, default=20)
    parser.add_argument("--max-evals", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="ABBA rounds per comparison")
    args = parser.parse_args()

    import shap
    import torch
    import transformers

    stage_defaults = ExplainConfig()
    batch = stage_defaults.batch_size
    texts = [str(t) for t in read_table(ROOT / "data/sst2/dev.tsv")["sentence"]][: args.sentences]
    model, tokenizer, labels = load_trained_classifier(args.model)
    began = time.perf_counter()
    fair = compare({"ours": ours(model, tokenizer, args.max_evals, batch, "fp32"),
                    "shap_pipeline": shap_over_pipeline(args.model, args.max_evals, batch)},
                   texts, args.rounds, labels)
    fair["settings"] = {"precision": "fp32 both", "batch_size": batch, "torch_threads": torch.get_num_threads(),
                        "warm_up": f"each arm explains the first {WARMUP_SENTENCES} sentences before timing",
                        "order": f"{args.rounds} ABBA rounds in one process"}
    defaults = compare({"ours": ours(model, tokenizer, args.max_evals, batch, stage_defaults.precision),
                        "shap_pipeline": shap_over_pipeline(args.model, args.max_evals, None)},
                       texts, args.rounds, labels)
    defaults["settings"] = {
        "ours": f"explain stage defaults: precision {stage_defaults.precision} (bf16 autocast here: "
                f"{use_bf16(stage_defaults.precision)}), batch {batch}",
        "shap_pipeline": "shap.Explainer(pipeline(model, top_k=None))(texts, max_evals=...): default batch sizes",
    }
    model_path = Path(args.model).resolve()
    result = {
        "like_for_like": fair,
        "defaults": defaults,
        "sentences": len(texts),
        "max_evals": args.max_evals,
        "setup": {"model": str(model_path.relative_to(ROOT)) if model_path.is_relative_to(ROOT) else args.model,
                  "shap": shap.__version__, "transformers": transformers.__version__,
                  "wall_seconds": time.perf_counter() - began},
        "provenance": provenance(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "explain.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'comparison':<14} {'ours s/sent':>11} {'shap s/sent':>11} {'speed-up':>9} {'rounds':>13} "
          f"{'spearman':>9}")
    for name, row in (("like for like", fair), ("defaults", defaults)):
        rate, ratio = row["sentences_per_second"], row["speedup"]
        print(f"{name:<14} {1 / rate['ours']:>11.2f} {1 / rate['shap_pipeline']:>11.2f} {ratio['median']:>8.2f}x "
              f"{ratio['min']:>6.2f}-{ratio['max']:.2f}x {row['spearman_mean']:>9.4f}")
    print(f"wrote {RESULTS / 'explain.json'}")


if __name__ == "__main__":
    main()
