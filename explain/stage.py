"""run_explain: attributions, faithfulness, plausibility, agreement and an HTML report for one or two classifiers.

The texts are a file's rows (an ERASER annotations file included), texts given directly, or by default the eval
split the model was trained with (from its data record), so a pipeline's explanations need no data settings of
their own. Texts longer than the model's window are predicted over overlapping windows and explained window by
window (explain.long_texts); with human rationales, each method's plausibility is measured against them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explain.agreement import aggregate as aggregate_agreement
from explain.agreement import agreement
from explain.config import ExplainConfig
from explain.faithfulness import faithfulness, random_baseline, summarize
from explain.generation import explain_generations
from explain.long_texts import explain_texts
from explain.plausibility import plausibility
from explain.plausibility import random_baseline as random_plausibility
from explain.plausibility import summarize as summarize_plausibility
from explain.predictor import Predictor, join_pair
from explain.rationales import is_eraser, rationale_mask, read_eraser
from explain.report import rationale_words, render, token_colors
from pipelines import artifacts
from pipelines.config import to_dict
from pipelines.data import LABEL, TEXT, TEXT_PAIR, read_record, recorded_data
from pipelines.environment import set_threads
from pipelines.errors import UserError
from pipelines.lm_data import PROMPT, recorded_lm_data
from pipelines.models import is_causal_lm_folder, load_trained_causal_lm, load_trained_classifier
from pipelines.stage import StageResult
from pipelines.tables import read_table, require_column
from pipelines.windows import backend_stride

log = logging.getLogger(__name__)
STAGE = "explain"
INFORMATIVE_POOL = 2000
GROUPS = ("most confident", "least confident", "misclassified")


@dataclass
class Examples:
    """A table of texts to explain: its column names, and where it came from."""

    table: object  # datasets.Dataset
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    source: str
    rationale_column: str | None = None
    first_line: int = 2  # the file line of row 0 (delimited files have a header line)


@dataclass
class Selected:
    """The texts to explain (pairs joined for the predictor), their gold labels and human rationales."""

    texts: list[str]
    gold: list[str | None]
    rationales: list[np.ndarray | None]
    source: str
    pairs: bool

    def subset(self, rows: list[int]) -> Selected:
        return Selected([self.texts[i] for i in rows], [self.gold[i] for i in rows],
                        [self.rationales[i] for i in rows], self.source, self.pairs)


def example_table(config: ExplainConfig) -> Examples:
    """The file's rows (an ERASER annotations file with its docs/ folder included), or the model's recorded eval
    split (standard columns, label names as gold labels)."""
    if config.input_file and is_eraser(config.input_file):
        return Examples(read_eraser(config.input_file), "text", None, "label",
                        f"{config.input_file} (ERASER layout)", "rationale", first_line=1)
    if config.input_file:
        first_line = 1 if Path(config.input_file).suffix.lower() in (".jsonl", ".json") else 2
        return Examples(read_table(config.input_file), config.text_column, config.text_pair_column,
                        config.label_column, config.input_file, config.rationale_column, first_line)
    if read_record(config.model) is None:
        raise UserError(f"give texts to explain: --input-file FILE or --texts \"...\" ({config.model} records no "
                        "eval split to explain)")
    keep = (config.rationale_column,) if config.rationale_column else ()
    data = recorded_data(config.model, keep_columns=keep)
    table = data.eval.add_column("gold", [data.label_names[i] for i in data.eval[LABEL]])
    return Examples(table, TEXT, TEXT_PAIR if data.has_pair else None, "gold",
                    f"the eval split of {config.model} ({len(table)} rows)", config.rationale_column)


def load_examples(config: ExplainConfig) -> Selected:
    """The texts to explain, with gold labels and rationales where there are; pairs are joined for the
    predictor. Every rationale is checked here, before a model is loaded."""
    if config.texts:
        n = len(config.texts)
        return Selected(list(config.texts), [None] * n, [None] * n, "the command line", False)
    examples = example_table(config)
    table, source = examples.table, examples.source
    columns = list(table.column_names)
    for name, role in ((examples.text_column, "text"), (examples.text_pair_column, "text pair"),
                       (examples.rationale_column, "rationale")):
        if name and name not in columns:
            raise UserError(f"{source}: no {role} column '{name}'; the columns are "
                            f"{', '.join(repr(c) for c in columns)}")
    if config.num_examples > len(table):
        raise UserError(f"num_examples {config.num_examples} is larger than {source}, which has {len(table)} rows")
    rows = list(range(len(table)))
    if config.select == "informative":  # choose after predicting; keep a bounded pool
        rows = sorted(np.random.default_rng(config.seed).permutation(len(table))[:INFORMATIVE_POOL].tolist())
    elif config.select == "random":
        rows = sorted(np.random.default_rng(config.seed).choice(len(table), config.num_examples, replace=False))
    rows = [int(r) for r in (rows if config.select == "informative" else rows[: config.num_examples])]
    subset = table.select(rows)
    texts = [str(t) if t is not None else "" for t in subset[examples.text_column]]
    empty = [rows[i] + examples.first_line for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise UserError(f"{source}: {len(empty)} of the selected rows have an empty text (first at line {empty[0]})")
    rationales: list[np.ndarray | None] = [None] * len(texts)
    if examples.rationale_column:
        rationales = [rationale_mask(value, len(text.split()), f"{source}: line {row + examples.first_line}")
                      for row, text, value in zip(rows, texts, subset[examples.rationale_column], strict=True)]
    if examples.text_pair_column:
        texts = [join_pair(t, str(p)) for t, p in zip(texts, subset[examples.text_pair_column], strict=True)]
    gold = [None] * len(texts)
    if examples.label_column and examples.label_column in columns:
        gold = [str(v) for v in subset[examples.label_column]]
    return Selected(texts, gold, rationales, source, examples.text_pair_column is not None)


def _gold_names(gold: list[str | None], labels: list[str]) -> list[str | None]:
    """Integer gold labels are shown by the model's label names."""
    return [labels[int(g)] if g is not None and g.isdigit() and int(g) < len(labels) else g for g in gold]


def informative(probabilities: np.ndarray, gold: list[str | None], labels: list[str], n: int) -> list[tuple[int, str]]:
    """(row, group) for n rows: the most confident correct, the least confident, and the misclassified
    predictions with the highest confidence, a third each (topped up from the confident ones)."""
    confidence = probabilities.max(axis=1)
    predicted = [labels[i] for i in probabilities.argmax(axis=1)]
    wrong = [i for i, g in enumerate(gold) if g is not None and g != predicted[i]]
    chosen: dict[int, str] = {}

    def take(candidates, group: str, count: int) -> None:
        for i in candidates:
            if count <= 0 or len(chosen) >= n:
                return
            if int(i) not in chosen:
                chosen[int(i)] = group
                count -= 1

    take(sorted(wrong, key=lambda i: -confidence[i]), "misclassified", n // 3)
    take(np.argsort(confidence, kind="stable"), "least confident", n // 3)
    take(np.argsort(-confidence, kind="stable"), "most confident", n)
    order = {g: k for k, g in enumerate(GROUPS)}
    return sorted(chosen.items(), key=lambda item: (order[item[1]], -confidence[item[0]]))


def generation_prompts(config: ExplainConfig) -> tuple[list[str], str]:
    """The prompts to explain: given directly, a file's text column, or the model's held-out prompts."""
    if config.texts:
        return list(config.texts), "the command line"
    if config.input_file:
        table = read_table(config.input_file)
        require_column(config.input_file, list(table.column_names), config.text_column, "text")
        return [str(t) for t in table[config.text_column]][: config.num_examples], config.input_file
    data, _ = recorded_lm_data(config.model)
    prompts = [p for p in data.eval[PROMPT] if p][: config.num_examples]
    return prompts, f"the held-out prompts of {config.model}"


def run_explain_generations(config: ExplainConfig, overwrite: bool = False) -> StageResult:
    """Explain a causal LM's (and config.compare's) continuations of prompts and publish them as the classifier
    explanations are: attributions.jsonl, explain_metrics.json and report.html."""
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    prompts, source = generation_prompts(config)
    models = [("model", *load_trained_causal_lm(config.model))]
    if config.compare:
        models.append(("compare", *load_trained_causal_lm(config.compare)))
    artifacts.prepare_output_dir(output_dir, resume=False, overwrite=overwrite, stage=STAGE, settings=to_dict(config))
    set_threads(config.num_threads)
    names = {"model": config.model_name or Path(config.model).name,
             "compare": config.compare_name or (Path(config.compare).name if config.compare else None)}
    done = explain_generations(config, [(names[r], m, t) for r, m, t in models], prompts)
    results = done["results"]
    models_info = [{"name": name, "labels": ["log p(continuation)"], "count": len(prompts), "accuracy": float("nan"),
                    "mean_probability": float(np.mean([a.probability for a in results[name]])),
                    "long_texts": {"max_length": 0, "stride": None, "mode": "none", "windowed": 0, "truncated": 0,
                                   "windows": len(prompts)}} for name in results]
    examples = [{"gold": None, "group": None, "rationale": None, "views": [
        {"model": name, "label": f"→ {done['continuations'][i]}", "probability": results[name][i].probability,
         "windows": 1, "tokens": token_colors(results[name][i])} for name in results]} for i in range(len(prompts))]
    metrics = {"task": "causal-lm", "score": "log-probability of the first model's greedy continuation",
               "examples": len(prompts), "methods": ["shap"], "max_evals": config.max_evals,
               "faithfulness": done["faithfulness"], "plausibility": [], "agreement": done["agreement"],
               "models": models_info, "continuations": done["continuations"],
               "examples_info": [{"gold": None, "group": None, "rationale": None} for _ in prompts]}
    lines = [json.dumps(a.to_json(), ensure_ascii=False) for name in results for a in results[name]]
    title = " vs ".join(n for n in names.values() if n)
    with artifacts.publishing(output_dir, STAGE, to_dict(config), artifacts.config_hash(prompts), started) as staging:
        artifacts.write_text(staging / "attributions.jsonl", "\n".join(lines) + "\n")
        artifacts.write_json(staging / "explain_metrics.json", metrics)
        artifacts.write_text(staging / "report.html", render(
            title, f"{source}; scores are log p(continuation)", ["shap"], config.max_evals, models_info, examples,
            done["faithfulness"], done["agreement"], config.top_k))
    return StageResult(STAGE, output_dir, metrics, time.perf_counter() - started)


def long_text_counts(predictor: Predictor, texts: list[str]) -> dict:
    """How many of the texts did not fit the model's window, and how they were read."""
    encoded = predictor.backend.encode(texts)
    return {"max_length": predictor.max_length, "stride": predictor.stride,
            "mode": "window" if predictor.stride is not None else "truncate",
            "windowed": encoded.windowed, "truncated": encoded.truncated,
            "windows": len(encoded) if encoded.owners is not None else len(texts)}


def run_explain(config: ExplainConfig, *, resume: bool = False, overwrite: bool = False) -> StageResult:
    """Explain config.model (and config.compare) and publish attributions, metrics and report.html.

    `resume` is accepted for the stage contract; there is nothing to resume (an unfinished run starts over).
    A causal language model's generations are explained instead (run_explain_generations)."""
    if is_causal_lm_folder(config.model):
        return run_explain_generations(config, overwrite=overwrite)
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    selected = load_examples(config)
    record = read_record(config.model)
    max_length = config.max_length or (record.max_length if record else 128)
    stride = backend_stride(max_length, config.stride, config.long_texts)
    loaded = [("model", *load_trained_classifier(config.model))]
    if config.compare:
        loaded.append(("compare", *load_trained_classifier(config.compare, role="--compare model")))
        if loaded[1][3] != loaded[0][3]:
            raise UserError(f"--compare model labels ({', '.join(loaded[1][3])}) differ from the model's "
                            f"({', '.join(loaded[0][3])}); explanations could not be compared")
    artifacts.prepare_output_dir(output_dir, resume=False, overwrite=overwrite, stage=STAGE,
                                 settings=to_dict(config))
    set_threads(config.num_threads)
    labels = loaded[0][3]
    selected.gold = _gold_names(selected.gold, labels)
    groups: list[str | None] = [None] * len(selected.texts)

    def predictor_of(model, tokenizer) -> Predictor:
        return Predictor(model, tokenizer, batch_size=config.batch_size, max_length=max_length,
                         pairs=selected.pairs, precision=config.precision, stride=stride)

    if config.select == "informative" and not config.texts:  # texts given directly are all explained, in order
        picked = informative(predictor_of(*loaded[0][1:3])(selected.texts), selected.gold, labels,
                             config.num_examples)
        selected, groups = selected.subset([i for i, _ in picked]), [g for _, g in picked]
    texts, gold, rationales = selected.texts, selected.gold, selected.rationales
    has_rationales = any(r is not None for r in rationales)

    names = {"model": config.model_name or Path(config.model).name or config.model,
             "compare": config.compare_name or (Path(config.compare).name if config.compare else None)}
    if names["compare"] == names["model"]:
        names["compare"] += " (compare)"
    results: dict[str, dict[str, list]] = {}
    faithfulness_rows, plausibility_rows, long_texts = [], [], {}
    for role, model, tokenizer, _ in loaded:
        predictor = predictor_of(model, tokenizer)
        long_texts[names[role]] = long_text_counts(predictor, texts)
        results[role] = {}
        for method in config.methods:
            began = time.perf_counter()
            attributions = explain_texts(method, predictor, texts, config.max_evals, config.batch_size, config.seed)
            seconds = time.perf_counter() - began
            scores = faithfulness(predictor, attributions)
            plausible = plausibility(attributions, rationales) if has_rationales else [None] * len(texts)
            for a, f, h in zip(attributions, scores, plausible, strict=True):
                a.extra.update({"model": names[role], "faithfulness": f, **({"plausibility": h} if h else {})})
            results[role][method] = attributions
            faithfulness_rows.append({"model": names[role], "method": method, "seconds": seconds,
                                      **summarize(scores)})
            if has_rationales:
                plausibility_rows.append({"model": names[role], "method": method,
                                          **summarize_plausibility(plausible)})
        baseline = random_baseline(predictor, results[role][config.methods[0]], seed=config.seed)
        faithfulness_rows.append({"model": names[role], "method": "random", "seconds": 0.0, **summarize(baseline)})
        if has_rationales:
            plausibility_rows.append({"model": names[role], "method": "random", **summarize_plausibility(
                random_plausibility(rationales, seed=config.seed))})
    for name, counts in long_texts.items():
        if counts["windowed"]:
            log.info("%s: %d of %d texts were longer than %d tokens and were explained over %d windows in all",
                     name, counts["windowed"], len(texts), max_length, counts["windows"])
        if counts["truncated"]:
            log.warning("%s: %d of %d texts were truncated to %d tokens", name, counts["truncated"], len(texts),
                        max_length)

    agreement_rows = []
    if config.compare:
        for method in config.methods:
            pairs = list(zip(results["model"][method], results["compare"][method], strict=True))
            rows = [agreement(a, b, config.top_k) for a, b in pairs]
            agreement_rows.append({"method": method, **aggregate_agreement(rows),
                                   "same_prediction": float(np.mean([a.predicted == b.predicted for a, b in pairs]))})

    first = config.methods[0]
    models = []
    for role, *_ in loaded:
        attributions = results[role][first]
        predicted = [a.label for a in attributions]
        known = [(p, g) for p, g in zip(predicted, gold, strict=True) if g is not None]
        models.append({"name": names[role], "labels": labels, "count": len(attributions),
                       "accuracy": float(np.mean([p == g for p, g in known])) if known else float("nan"),
                       "mean_probability": float(np.mean([a.probability for a in attributions])),
                       "long_texts": long_texts[names[role]]})
    examples = [{"gold": gold[i], "group": groups[i], "rationale": rationale_words(texts[i], rationales[i]),
                 "views": [{"model": names[role], "label": results[role][first][i].label,
                            "probability": results[role][first][i].probability,
                            "windows": results[role][first][i].extra.get("windows", 1),
                            "tokens": token_colors(results[role][first][i])} for role, *_ in loaded]}
                for i in range(len(texts))]

    metrics = {
        "examples": len(texts),
        "methods": config.methods,
        "max_evals": config.max_evals,
        "long_texts": long_texts,
        "faithfulness": faithfulness_rows,
        "plausibility": plausibility_rows,
        "agreement": agreement_rows,
        "models": models,
        "examples_info": [{"gold": gold[i], "group": groups[i],
                           "rationale": rationales[i].astype(int).tolist() if rationales[i] is not None else None}
                          for i in range(len(texts))],
    }
    lines = [json.dumps(a.to_json(), ensure_ascii=False) for role in results for m in results[role]
             for a in results[role][m]]
    title = names["model"] + (f" vs {names['compare']}" if config.compare else "")
    fingerprint = artifacts.config_hash({"texts": texts, "gold": gold})
    with artifacts.publishing(output_dir, STAGE, to_dict(config), fingerprint, started) as staging:
        artifacts.write_text(staging / "attributions.jsonl", "\n".join(lines) + "\n")
        artifacts.write_json(staging / "explain_metrics.json", metrics)
        artifacts.write_text(staging / "report.html", render(
            title, selected.source, config.methods, config.max_evals, models, examples, faithfulness_rows,
            agreement_rows, config.top_k, plausibility_rows))
    return StageResult(STAGE, output_dir, metrics, time.perf_counter() - started)
