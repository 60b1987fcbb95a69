"""HTML escaping, fuzzed: user strings (texts, tokens, label names, file and run names) never change the
structure of a report; no tag, attribute or javascript: URL of theirs gets through, and their text comes
back intact when the page is parsed."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from explain.attribution import Attribution
from explain.report import render, token_colors

NASTY = ["</script><script>alert(1)</script>", '" onmouseover="alert(1)', "' onclick='alert(1)'",
         "javascript:alert(1)", "<img src=x onerror=alert(1)>", "😀 𝕏 \U0001f4a5", "&amp; &lt;", "<!-- x",
         "]]>", "<style>body{}</style>", "$x$ and $", "$x^$", r"$\frac{a$", "../../etc/passwd", "{{ 7*7 }}",
         "\\u003c"]
user_text = st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=24),
                      st.lists(st.sampled_from(NASTY), min_size=2, max_size=3).map("".join))


class Structure(HTMLParser):
    """The page's tags with their attribute names, its attribute values, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple] = []
        self.values: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(name for name, _ in attrs))))
        self.values += [value or "" for _, value in attrs]

    def handle_endtag(self, tag):
        self.tags.append(("/" + tag,))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Structure:
    parser = Structure()
    parser.feed(page)
    parser.close()
    return parser


def explain_page(title: str, source: str, label_a: str, label_b: str, text: str, token: str) -> str:
    attribution = Attribution(text=text, tokens=[token, "plain"], scores=np.array([0.7, -0.2]), predicted=0,
                              probability=0.9, label=label_a, method="shap")
    long_texts = {"max_length": 128, "stride": 32, "mode": "window", "windowed": 1, "truncated": 1, "windows": 3}
    models = [{"name": label_b, "labels": [label_a, label_b], "count": 1, "accuracy": 1.0, "mean_probability": 0.9,
               "long_texts": long_texts}]
    examples = [{"gold": label_b, "group": "most confident", "rationale": [{"text": text, "evidence": True}],
                 "views": [{"model": label_b, "label": label_a, "probability": 0.9, "windows": 2,
                            "tokens": token_colors(attribution)}]}]
    plausibility_rows = [{"model": label_b, "method": "shap", "token_auprc": 0.5, "token_f1_top_k": 0.5,
                          "iou_f1": 0.5, "scored": 1}]
    return render(title, source, ["shap"], 100, models, examples, [], [], 3, plausibility_rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=user_text, source=user_text, label_a=user_text, label_b=user_text, text=user_text, token=user_text)
def test_explain_report_escapes_every_user_string(title, source, label_a, label_b, text, token):
    page = explain_page(title, source, label_a, label_b, text, token)
    # a blank token is not shown (special tokens are blank): the reference keeps the same shape
    reference = parse(explain_page("t", "s", "a", "b", "x", "y" if token.strip() else " "))
    parsed = parse(page)
    assert parsed.tags == reference.tags  # nothing the user wrote became a tag or an attribute
    assert not any(value.strip().lower().startswith("javascript:") for value in parsed.values)
    assert "<script" not in page.lower()
    text_out = "".join(parsed.text)
    for value in (title, label_a, label_b, token.strip()):
        if value.strip() and "\r" not in value:
            assert value in text_out


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("report_runs")


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking:
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # each try renders plots
@given(title=user_text, label_a=user_text, label_b=user_text, text=user_text)
@example(title="t", label_a="$x^$", label_b=r"$\frac{a$", text="$$")  # not TeX: used to crash the plots
def test_pipeline_report_escapes_run_names_label_names_and_texts(title, label_a, label_b, text, run_folder):
    import datasets

    from chain.report import build_report
    from pipelines import artifacts
    from pipelines.data import PreparedData

    if label_a == label_b:
        label_b += "2"
    names = [label_a, label_b]
    split = datasets.Dataset.from_dict({"text": [text, "plain text"], "label": [0, 1]})
    data = PreparedData(train=split, eval=split, label_names=names, has_pair=False, fingerprint="f")
    evaluated = {"accuracy": 1.0, "macro_f1": 1.0,
                 "per_class": {n: {"precision": 1.0, "recall": 1.0, "f1": 1.0} for n in names},
                 "confusion_matrix": {"labels": names, "counts": [[1, 0], [0, 1]]}}
    artifacts.write_json(run_folder / "finetune" / "metrics.json", {"eval": evaluated})
    artifacts.write_json(run_folder / "export" / "deployment.json", {"parity_rows": 2, "rows": [
        {"model": "teacher", "format": "onnx_int8", "format_name": "ONNX int8", "size_mb": 1.0, "latency_b1_ms": 1.0,
         "latency_b32_ms": 2.0, "dev_accuracy": 1.0, "agreement_with_teacher": 1.0, "int8_recipe": label_a}]})
    page = build_report(run_folder, data, title=title)
    reference = parse(build_report(run_folder, PreparedData(
        train=split, eval=split, label_names=["a", "b"], has_pair=False, fingerprint="f"), title="t"))
    parsed = parse(page)
    assert parsed.tags == reference.tags
    assert "<script" not in page.lower()
    text_out = "".join(parsed.text)
    for value in (title, label_a, label_b):
        if value.strip() and "\r" not in value:
            assert value in text_out
