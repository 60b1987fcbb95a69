"""Plausibility and faithfulness of every attribution method on human rationales, and which should be the default.

    python benchmarks/bench_plausibility.py [--model runs/default/finetune --sentences 200 --chunk 25]

The sentences are drawn (seeded) from ../shared/data/sst_rationales/train.jsonl: Stanford Sentiment Treebank
training sentences with a word-level human rationale. Their phrases are SST-2 training rows, so the model has
seen them: the figures compare methods with each other, they do not claim plausibility on unseen text.

Every method and variant explains the same sentences with the same model, in one process. Sentences go in chunks
and each chunk runs every arm in turn, the order reversed from one chunk to the next (A B ... B A), so a drift in
the machine's speed falls on every arm alike. Per arm: token AUPRC, top-k token F1 and IOU F1 against the
rationales (explain.plausibility), AOPC comprehensiveness and sufficiency (explain.faithfulness), seconds per
sentence; each metric's paired difference from the current default (SHAP Partition, max_evals 300) with a 95%
bootstrap interval over sentences. Exact Shapley values (2^n model calls) run on the sentences of at most
--exact-max-units units, beside the default on the same subset.

The rule for the default: the best token AUPRC among the arms whose comprehensiveness is not worse than the
default's and sufficiency not worse (their bootstrap intervals do not lie wholly on the worse side) and whose time
is within 1.5x the default's. Prints a table and writes benchmarks/results/plausibility.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import abba, provenance  # noqa: E402
from explain.attribution import Attribution  # noqa: E402
from explain.faithfulness import faithfulness  # noqa: E402
from explain.methods import explain_ig, explain_lime, explain_shap, masker_for  # noqa: E402
from explain.plausibility import plausibility  # noqa: E402
from explain.plausibility import random_baseline as random_plausibility  # noqa: E402
from explain.predictor import Predictor  # noqa: E402
from explain.rationales import rationale_mask  # noqa: E402
from pipelines.environment import set_threads  # noqa: E402
from pipelines.models import load_trained_classifier  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data" / "sst_rationales" / "train.jsonl"
DEFAULT = "shap"
PLAUSIBILITY = ("token_auprc", "token_f1_top_k", "iou_f1")
FAITHFULNESS = ("aopc_comprehensiveness", "aopc_sufficiency")
HIGHER_IS_BETTER = {"token_auprc": True, "token_f1_top_k": True, "iou_f1": True, "aopc_comprehensiveness": True,
                    "aopc_sufficiency": False}


def shap_with(predictor: Predictor, texts: list[str], algorithm: str, max_evals: Callable[[int], int],
              clustering: str = "text", name: str = "shap") -> list[Attribution]:
    """SHAP attributions (predicted class) with another explainer or clustering, one text at a time where the
    budget depends on the text's number of units."""
    import shap

    results = []
    probabilities = predictor(texts)
    for text, row in zip(texts, probabilities, strict=True):
        masker = masker_for(predictor)
        units = len(masker.data_transform(text)[0])
        if clustering == "none":
            masker.clustering = None  # exact / permutation Shapley values over the tokens, no hierarchy
        elif clustering == "balanced":
            masker.clustering = balanced_tree(units)
        explainer = {"partition": shap.explainers.Partition, "permutation": shap.explainers.Permutation,
                     "exact": shap.explainers.Exact}[algorithm](predictor, masker)
        explanation = explainer([text], max_evals=max_evals(units), batch_size=256, silent=True)
        predicted = int(row.argmax())
        values = np.asarray(explanation.values[0], dtype=np.float64)
        results.append(Attribution(text=text, tokens=[str(t) for t in explanation.data[0]], scores=values[:, predicted],
                                   predicted=predicted, probability=float(row[predicted]),
                                   label=predictor.label_names[predicted], method=name))
    return results


def balanced_tree(n: int) -> np.ndarray:
    """A linkage matrix joining neighbouring units pairwise, level by level (position only, no punctuation rules)."""
    clusters, rows, next_id, level = [(i, 1) for i in range(n)], [], n, 1
    while len(clusters) > 1:
        merged = []
        for i in range(0, len(clusters) - 1, 2):
            (a, size_a), (b, size_b) = clusters[i], clusters[i + 1]
            rows.append([a, b, level, size_a + size_b])
            merged.append((next_id, size_a + size_b))
            next_id += 1
        if len(clusters) % 2:
            merged.append(clusters[-1])
        clusters, level = merged, level + 1
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def arms(max_evals: int) -> dict[str, tuple[str, Callable]]:
    return {
        DEFAULT: (f"SHAP Partition, Text masker's clustering, max_evals {max_evals} (the current default)",
                  lambda p, t: explain_shap(p, t, max_evals, 256)),
        "shap_evals150": ("SHAP Partition, max_evals 150", lambda p, t: explain_shap(p, t, 150, 256)),
        "shap_evals450": ("SHAP Partition, max_evals 450 (1.5x the budget)", lambda p, t: explain_shap(p, t, 450, 256)),
        "shap_balanced": (f"SHAP Partition over a balanced binary tree of positions, max_evals {max_evals}",
                          lambda p, t: shap_with(p, t, "partition", lambda n: max_evals, "balanced", "shap_balanced")),
        "shap_permutation": (f"SHAP Permutation explainer, no clustering, max_evals max({max_evals}, 2n+1)",
                             lambda p, t: shap_with(p, t, "permutation", lambda n: max(max_evals, 2 * n + 1), "none",
                                                    "shap_permutation")),
        "lime": (f"LIME, {max_evals} samples", lambda p, t: explain_lime(p, t, num_samples=max_evals, seed=0)),
        "ig": ("Integrated gradients, 50 steps, pad baseline", lambda p, t: explain_ig(p, t)),
    }


def exact(predictor: Predictor, texts: list[str]) -> list[Attribution]:
    return shap_with(predictor, texts, "exact", lambda n: 2 ** n + 2, "none", "shap_exact")


def per_sentence(predictor: Predictor, attributions: list[Attribution], rationales: list[np.ndarray]) -> dict:
    """Each metric per sentence."""
    plausible = plausibility(attributions, rationales)
    faithful = faithfulness(predictor, attributions)
    return {key: np.asarray([row[key] for row in plausible], dtype=np.float64) for key in PLAUSIBILITY} | {
        key: np.asarray([row[key] for row in faithful], dtype=np.float64) for key in FAITHFULNESS}


def paired_interval(a: np.ndarray, b: np.ndarray, seed: int = 0, draws: int = 2000) -> list[float]:
    """95% bootstrap interval (over sentences) of mean(a - b)."""
    keep = ~(np.isnan(a) | np.isnan(b))
    difference = a[keep] - b[keep]
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), (draws, len(difference)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summary(values: dict, seconds: float, n: int, reference: dict | None, reference_seconds: float | None) -> dict:
    row = {key: float(np.nanmean(values[key])) for key in (*PLAUSIBILITY, *FAITHFULNESS)}
    row["seconds_per_sentence"] = seconds / n
    if reference is not None:
        row["time_vs_default"] = seconds / reference_seconds
        row["difference_vs_default_95ci"] = {key: paired_interval(values[key], reference[key])
                                             for key in (*PLAUSIBILITY, *FAITHFULNESS)}
    return row


def not_worse(row: dict, key: str) -> bool:
    low, high = row["difference_vs_default_95ci"][key]
    return high >= 0 if HIGHER_IS_BETTER[key] else low <= 0


def choose(rows: dict) -> dict:
    eligible = [name for name, row in rows.items() if name == DEFAULT or (
        row["time_vs_default"] <= 1.5 and all(not_worse(row, key) for key in FAITHFULNESS))]
    chosen = max(eligible, key=lambda name: rows[name]["token_auprc"])
    better = chosen != DEFAULT and rows[chosen]["difference_vs_default_95ci"]["token_auprc"][0] > 0
    return {"rule": "best token_auprc among arms with comprehensiveness and sufficiency not worse than the "
                    "default's (95% bootstrap interval) within 1.5x its time",
            "eligible": eligible, "best_eligible": chosen,
            "auprc_gain_beyond_noise": bool(better), "default": chosen if better else DEFAULT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/default/finetune")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--max-evals", type=int, default=300)
    parser.add_argument("--exact-max-units", type=int, default=12)
    parser.add_argument("--arms", nargs="*", default=None, help="a subset of the arms (default: all)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS / "plausibility.json"))
    args = parser.parse_args()

    set_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    picked = sorted(np.random.default_rng(args.seed).choice(len(rows), args.sentences, replace=False).tolist())
    texts = [rows[i]["text"] for i in picked]
    rationales = [rationale_mask(rows[i]["rationale"], len(rows[i]["text"].split()), f"{args.data}: line {i + 1}")
                  for i in picked]
    model, tokenizer, labels = load_trained_classifier(args.model)
    predictor = Predictor(model, tokenizer, batch_size=256, max_length=128)
    gold = [labels.index(rows[i]["label"]) if rows[i]["label"] in labels else None for i in picked]
    accuracy = float(np.mean([g == p for g, p in zip(gold, predictor(texts).argmax(1), strict=True)]))

    all_arms = arms(args.max_evals)
    chosen_arms = {k: v for k, v in all_arms.items() if args.arms is None or k in args.arms or k == DEFAULT}
    attributions: dict[str, list[Attribution]] = {name: [] for name in chosen_arms}
    seconds = dict.fromkeys(chosen_arms, 0.0)
    chunks = [list(range(s, min(s + args.chunk, len(texts)))) for s in range(0, len(texts), args.chunk)]
    explain_shap(predictor, texts[:2], args.max_evals, 256)  # warm-up
    for c, chunk in enumerate(chunks):
        order = abba(list(chosen_arms), 2)[len(chosen_arms) * (c % 2):][: len(chosen_arms)]
        for name in order:
            began = time.perf_counter()
            attributions[name] += chosen_arms[name][1](predictor, [texts[i] for i in chunk])
            seconds[name] += time.perf_counter() - began
        print(f"chunk {c + 1}/{len(chunks)}: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()), flush=True)

    values = {name: per_sentence(predictor, attributions[name], rationales) for name in chosen_arms}
    results = {name: {"description": chosen_arms[name][0],
                      **summary(values[name], seconds[name], len(texts), values[DEFAULT] if name != DEFAULT else None,
                                seconds[DEFAULT] if name != DEFAULT else None)} for name in chosen_arms}
    results[DEFAULT]["time_vs_default"] = 1.0
    rng_rows = random_plausibility(rationales, draws=20, seed=args.seed)
    random_row = {key: float(np.nanmean([r[key] for r in rng_rows if r])) for key in PLAUSIBILITY}
    from explain.faithfulness import random_baseline

    faithful_random = random_baseline(predictor, attributions[DEFAULT], draws=3, seed=args.seed)
    random_row |= {key: float(np.mean([r[key] for r in faithful_random])) for key in FAITHFULNESS}

    units = [sum(1 for t in a.tokens if t.strip()) for a in attributions[DEFAULT]]
    short = [i for i, n in enumerate(units) if n <= args.exact_max_units]
    exact_rows = {}
    if short:
        began = time.perf_counter()
        exact_attributions = exact(predictor, [texts[i] for i in short])
        exact_seconds = time.perf_counter() - began
        exact_values = per_sentence(predictor, exact_attributions, [rationales[i] for i in short])
        for name in chosen_arms:
            sub = per_sentence(predictor, [attributions[name][i] for i in short], [rationales[i] for i in short])
            exact_rows[name] = {key: float(np.nanmean(sub[key])) for key in (*PLAUSIBILITY, *FAITHFULNESS)}
        exact_rows["shap_exact"] = {"description": "exact Shapley values (Exact explainer, no clustering)",
                                    **summary(exact_values, exact_seconds, len(short), None, None)}
        default_short = per_sentence(predictor, [attributions[DEFAULT][i] for i in short],
                                     [rationales[i] for i in short])
        exact_rows["shap_exact"]["difference_vs_default_95ci"] = {
            key: paired_interval(exact_values[key], default_short[key]) for key in (*PLAUSIBILITY, *FAITHFULNESS)}

    report = {
        "provenance": provenance(),
        "model": args.model,
        "data": "sst_rationales/train.jsonl (SST training sentences: the model has seen their phrases)",
        "sentences": len(texts),
        "model_accuracy_on_them": accuracy,
        "mean_words": float(np.mean([len(t.split()) for t in texts])),
        "mean_rationale_share": float(np.mean([r.mean() for r in rationales])),
        "settings": {"max_evals": args.max_evals, "chunk": args.chunk, "order": "chunks, arms in ABBA order",
                     "threads": args.threads or "all cores", "seed": args.seed},
        "arms": results,
        "random": random_row,
        "exact_subset": {"sentences": len(short), "max_units": args.exact_max_units, "arms": exact_rows},
        "choice": choose(results),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    header = f"{'arm':18} {'AUPRC':>7} {'F1@k':>7} {'IOU F1':>7} {'comp':>7} {'suff':>7} {'s/sent':>7} {'time':>6}"
    print(header)
    for name, row in [*results.items(), ("random", random_row)]:
        print(f"{name:18} " + " ".join(f"{row[k]:7.4f}" for k in (*PLAUSIBILITY, *FAITHFULNESS))
              + (f" {row['seconds_per_sentence']:7.2f} {row['time_vs_default']:5.2f}x" if "time_vs_default" in row
                 else ""))
    if exact_rows:
        print(f"\n{len(short)} sentences of at most {args.exact_max_units} units:")
        for name, row in exact_rows.items():
            print(f"{name:18} " + " ".join(f"{row[k]:7.4f}" for k in (*PLAUSIBILITY, *FAITHFULNESS)))
    print("\nchoice:", json.dumps(report["choice"]))


if __name__ == "__main__":
    main()
