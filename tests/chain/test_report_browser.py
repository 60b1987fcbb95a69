"""The smoke pipeline's report opened in a real headless Chromium, offline: it renders, no console errors,
every plot image loads. (Marked real_model: it runs configs/smoke.yaml with the packaged MiniLM.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chain.config import PipelineConfig
from chain.runner import run_pipeline
from pipelines.config import load_config
from tests.conftest import ROOT

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium, installed here if it is missing; skip (with the reason) where that is impossible."""
    found = shutil.which("chromium")
    if found:
        return found
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"Debian's chromium is not installed and could not be installed here ({err})")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get ran but no chromium executable appeared")
    return found


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> Path:
    config = load_config(PipelineConfig, ROOT / "configs" / "smoke.yaml")
    config.output_dir = str(tmp_path_factory.mktemp("smoke") / "run")
    config.data.train_file = str(ROOT / config.data.train_file)
    config.data.eval_file = str(ROOT / config.data.eval_file)
    result = run_pipeline(config)
    assert result.report is not None
    teacher = (Path(config.output_dir) / "finetune" / "metrics.json").read_text()
    assert '"accuracy"' in teacher
    return result.report


@pytest.mark.real_model
def test_smoke_report_renders_offline_in_chromium(smoke_report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(smoke_report.as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    assert len(images) >= 4  # data, training curves, confusion matrices, faithfulness
    assert all(complete and width > 0 for _, complete, width in images), images
    for section in ("Data", "Training", "Teacher vs student", "Explanations", "Faithfulness"):
        assert any(section in h for h in headings), headings
    print(f"screenshot: {tmp_path / 'report.png'}")
