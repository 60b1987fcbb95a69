"""run_report: one self-contained HTML file over a run folder (data, training, teacher vs student, deployment,
confusion matrices, explanations, faithfulness and agreement), plots embedded as PNG, every user string escaped.

It reads only what the stages published in their folders (the data summary from the teacher's data record).
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import jinja2
import numpy as np

from chain.config import ReportConfig
from explain.agreement import SPECS as AGREEMENT_SPECS
from explain.faithfulness import FRACTIONS
from explain.faithfulness import SPECS as FAITHFULNESS_SPECS
from explain.plausibility import SPECS as PLAUSIBILITY_SPECS
from explain.report import TEMPLATES as EXPLAIN_TEMPLATES
from explain.report import faithfulness_plot, rationale_words
from pipelines import artifacts
from pipelines.config import to_dict
from pipelines.data import read_record, recorded_data
from pipelines.stage import StageResult

TEMPLATES = Path(__file__).parent / "templates"
STAGE = "report"
REPORT = "report.html"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # label names are user text: "$x^$" is not TeX to render
    import matplotlib.pyplot as plt

    return plt


def data_summary(data) -> dict:
    """Sizes, class balance and text lengths (in words) of the prepared train and eval splits."""
    plt = _pyplot()
    splits = {"train": data.train, "eval": data.eval}
    balance = {name: np.bincount(list(ds["label"]), minlength=len(data.label_names)).tolist()
               for name, ds in splits.items()}
    lengths = {name: [len(str(t).split()) for t in ds["text"]] for name, ds in splits.items()}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
    top = max(max(v) for v in lengths.values())
    bins = np.linspace(0, top + 1, min(40, top + 2))
    for name, values in lengths.items():
        left.hist(values, bins=bins, alpha=0.6, density=True, label=f"{name} (median {int(np.median(values))})")
    left.set_xlabel("words per text")
    left.set_ylabel("share")
    left.legend()
    left.set_title("Text length")
    x = np.arange(len(data.label_names))
    for offset, (name, counts) in zip((-0.2, 0.2), balance.items(), strict=True):
        total = max(sum(counts), 1)
        right.bar(x + offset, [c / total for c in counts], width=0.4, label=name)
    right.set_xticks(x, data.label_names, rotation=20 if len(x) > 4 else 0)
    right.set_title("Class balance")
    right.legend()
    return {
        "sizes": {name: len(ds) for name, ds in splits.items()},
        "balance": balance,
        "label_names": data.label_names,
        "plot": _png(fig),
    }


def training_curves(logs: dict[str, list[dict]]) -> str:
    """Training loss and eval accuracy against steps, one line per model."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
    for name, history in logs.items():
        losses = [(e["step"], e["loss"]) for e in history if "loss" in e and "step" in e]
        metric = "eval_accuracy" if any("eval_accuracy" in e for e in history) else "eval_loss"
        evals = [(e["step"], e[metric]) for e in history if metric in e]
        if losses:
            left.plot(*zip(*losses, strict=True), label=name)
        if evals:
            right.plot(*zip(*evals, strict=True), marker="o", label=name)
            right.set_title("Eval accuracy" if metric == "eval_accuracy" else "Eval loss (response tokens)")
    left.set_title("Training loss")
    left.set_xlabel("step")
    right.set_xlabel("step")
    right.set_title(right.get_title() or "Eval accuracy")
    for ax in (left, right):
        if ax.lines:
            ax.legend()
    return _png(fig)


def confusion_plot(matrices: dict[str, dict]) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.6), squeeze=False)
    for ax, (name, confusion) in zip(axes[0], matrices.items(), strict=True):
        counts = np.asarray(confusion["counts"])
        ax.imshow(counts, cmap="Blues")
        labels = confusion["labels"]
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > counts.max() / 2 else "black")
    return _png(fig)


def deployment_plot(rows: list[dict]) -> str:
    """Latency at batch 1 per model and format (bars), dev accuracy written on each bar."""
    plt = _pyplot()
    timed = [r for r in rows if r.get("latency_b1_ms") is not None]
    if not timed:
        return ""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(timed) + 1.2))
    names = [f"{r['model']} · {r['format_name']}" for r in timed]
    values = [r["latency_b1_ms"] for r in timed]
    colors = ["#2563eb" if r["model"] == "teacher" else "#16a34a" for r in timed]
    ax.barh(range(len(timed)), values, color=colors)
    ax.set_yticks(range(len(timed)), names)
    ax.invert_yaxis()
    ax.set_xlabel("CPU latency at batch 1 (ms, tokenization included)")
    for i, r in enumerate(timed):
        accuracy = "" if r["dev_accuracy"] is None else f"  acc {r['dev_accuracy']:.4f}"
        ax.text(values[i], i, f" {values[i]:.2f} ms{accuracy}", va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.45)
    ax.set_title("Deployment: latency and accuracy per format")
    return _png(fig)


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def build_report(run_dir: Path, data, title: str) -> str:
    """Render report.html for a run folder holding finetune/, distill/, export/ and explain/ (each optional)."""
    from explain.report import token_colors

    finetune, distill, explain = run_dir / "finetune", run_dir / "distill", run_dir / "explain"
    teacher_metrics, student_metrics = _read(finetune / "metrics.json"), _read(distill / "metrics.json")
    distill_metrics = _read(distill / "distill_metrics.json")
    logs = {name: _read(folder / "training_log.json") for name, folder in (("teacher", finetune),
                                                                           ("student", distill))}
    language_model = None
    if teacher_metrics and teacher_metrics.get("task") == "causal-lm":  # perplexity and generations, no classes
        language_model = {"eval": teacher_metrics["eval"], "data": teacher_metrics["data"],
                          "generations": _read(finetune / "generations.json") or []}
        teacher_metrics = None
    if student_metrics and student_metrics.get("task") == "causal-lm":
        if language_model is not None:
            language_model["student"] = student_metrics
        student_metrics = None
    models = {name: m["eval"] for name, m in (("teacher", teacher_metrics), ("student", student_metrics)) if m}
    explain_metrics = _read(explain / "explain_metrics.json")
    deployment = _read(run_dir / "export" / "deployment.json")
    examples, faithfulness_rows, agreement_rows, explain_models, plausibility_rows = [], [], [], [], []
    if explain_metrics:
        from explain.attribution import Attribution

        records = [json.loads(line) for line in (explain / "attributions.jsonl").read_text().splitlines() if line]
        first = explain_metrics["methods"][0]
        by_model: dict[str, list[dict]] = {}
        for record in records:
            if record["method"] == first:
                by_model.setdefault(record["model"], []).append(record)
        per_example = list(zip(*by_model.values(), strict=True))
        for views, info in zip(per_example, explain_metrics.get("examples_info", [{}] * len(per_example)),
                               strict=True):
            rationale = info.get("rationale")
            examples.append({"gold": info.get("gold"), "group": info.get("group"), "rationale": rationale_words(
                views[0]["text"], np.asarray(rationale) if rationale is not None else None), "views": [
                {"model": r["model"], "label": r["label"], "probability": r["probability"],
                 "windows": r.get("windows", 1),
                 "tokens": token_colors(Attribution(text=r["text"], tokens=r["tokens"], scores=np.asarray(r["scores"]),
                                                    predicted=0, probability=r["probability"], label=r["label"],
                                                    method=first))}
                for r in views]})
        faithfulness_rows, agreement_rows = explain_metrics["faithfulness"], explain_metrics["agreement"]
        plausibility_rows = explain_metrics.get("plausibility", [])
        explain_models = explain_metrics["models"]
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader([TEMPLATES, EXPLAIN_TEMPLATES]),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.get_template("pipeline_report.html.j2").render(
        title=title,
        stages=[label for folder, label in (("finetune", "Fine-tune"), ("distill", "Distill"), ("export", "Export"),
                                            ("explain", "Explain")) if (run_dir / folder).is_dir()] or ["Report"],
        language_model=language_model,
        data=data_summary(data) if data is not None else None,
        curves=training_curves({k: v for k, v in logs.items() if v}) if any(logs.values()) else "",
        models=explain_models or [{"name": n} for n in models],
        comparison=distill_metrics,
        per_class=models,
        confusion=confusion_plot({k: v["confusion_matrix"] for k, v in models.items()}) if models else "",
        examples=examples,
        methods=explain_metrics["methods"] if explain_metrics else [],
        faithfulness_rows=faithfulness_rows,
        faithfulness_specs=list(FAITHFULNESS_SPECS.values()),
        faithfulness_plot=faithfulness_plot(faithfulness_rows) if faithfulness_rows else "",
        agreement_rows=agreement_rows,
        plausibility_rows=plausibility_rows,
        plausibility_specs=list(PLAUSIBILITY_SPECS.values()),
        agreement_specs=list(AGREEMENT_SPECS.values()),
        top_k=3,
        fractions=", ".join(f"{f:.0%}" for f in FRACTIONS),
        teacher=_read(finetune / "manifest.json"),
        deployment=deployment,
        deployment_plot=deployment_plot(deployment["rows"]) if deployment else "",
    )


def run_report(config: ReportConfig, *, resume: bool = False, overwrite: bool = False) -> StageResult:
    """Render the run folder's report into config.output_dir/report.html (with a manifest, atomically).

    `resume` is accepted for the stage contract; there is nothing to resume."""
    started = time.perf_counter()
    run_dir, output_dir = Path(config.run_dir), Path(config.output_dir)
    teacher_dir = run_dir / "finetune"
    data = recorded_data(teacher_dir) if read_record(teacher_dir) else None
    html = build_report(run_dir, data, title=config.title)
    settings = to_dict(config)
    artifacts.prepare_output_dir(output_dir, resume=False, overwrite=overwrite, stage=STAGE, settings=settings)
    with artifacts.publishing(output_dir, STAGE, settings, data.fingerprint if data else "", started) as staging:
        artifacts.write_text(staging / REPORT, html)
    return StageResult(STAGE, output_dir, {"report": str(output_dir / REPORT)}, time.perf_counter() - started)
