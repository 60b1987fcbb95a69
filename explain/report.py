"""The explanations report: one self-contained HTML file (inline styles and images, every user string escaped)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import jinja2
import numpy as np

from explain.agreement import SPECS as AGREEMENT_SPECS
from explain.attribution import Attribution
from explain.faithfulness import FRACTIONS
from explain.faithfulness import SPECS as FAITHFULNESS_SPECS
from explain.plausibility import SPECS as PLAUSIBILITY_SPECS

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def token_colors(attribution: Attribution) -> list[dict]:
    """Tokens with a red (for the prediction) or blue (against) background scaled by |score| / max |score|."""
    real = [abs(float(s)) for t, s in zip(attribution.tokens, attribution.scores, strict=True) if t.strip()]
    scale = max(real, default=0.0) or 1.0
    out = []
    for text, score in zip(attribution.tokens, attribution.scores, strict=True):
        if not text.strip():
            continue
        alpha = min(abs(float(score)) / scale, 1.0) * 0.6
        rgb = "220,38,38" if score >= 0 else "37,99,235"
        out.append({"text": text, "score": float(score), "color": f"rgba({rgb},{alpha:.3f})"})
    return out


def rationale_words(text: str, rationale: np.ndarray | None) -> list[dict] | None:
    """The text's words, each marked as human evidence or not (words past the rationale, a pair's second text,
    are not marked)."""
    if rationale is None:
        return None
    words = text.split()
    return [{"text": w, "evidence": bool(i < len(rationale) and rationale[i])} for i, w in enumerate(words)]


def faithfulness_plot(rows: list[dict]) -> str:
    """Grouped bars of each faithfulness metric per model and method (random included), as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # model names are user text, not TeX
    import matplotlib.pyplot as plt

    names = list(FAITHFULNESS_SPECS)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.2))
    labels = [f"{r['model']}\n{r['method']}" for r in rows]
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        values = [r[name] for r in rows]
        colors = ["#9aa5b1" if r["method"] == "random" else "#2563eb" for r in rows]
        ax.bar(range(len(rows)), values, color=colors)
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        spec = FAITHFULNESS_SPECS[name]
        ax.set_title(f"{name} ({'higher' if spec.higher_is_better else 'lower'} is better)", fontsize=10)
        ax.axhline(0, color="#333", linewidth=0.6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render(title: str, source: str, methods: list[str], max_evals: int, models: list[dict], examples: list[dict],
           faithfulness_rows: list[dict], agreement_rows: list[dict], top_k: int,
           plausibility_rows: list[dict] | None = None) -> str:
    return environment().get_template("report.html.j2").render(
        title=title, source=source, methods=methods, max_evals=max_evals, models=models, examples=examples,
        has_gold=any(ex["gold"] is not None for ex in examples),
        faithfulness_rows=faithfulness_rows, faithfulness_specs=list(FAITHFULNESS_SPECS.values()),
        faithfulness_plot=faithfulness_plot(faithfulness_rows) if faithfulness_rows else "",
        agreement_rows=agreement_rows, agreement_specs=list(AGREEMENT_SPECS.values()), top_k=top_k,
        fractions=", ".join(f"{f:.0%}" for f in FRACTIONS),
        plausibility_rows=plausibility_rows or [], plausibility_specs=list(PLAUSIBILITY_SPECS.values()),
    )
