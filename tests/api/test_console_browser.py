"""The web console in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

Search, see the ranked hits in the service's order, open an explanation and its attribution heat
map, click a result (a click event lands in the feedback log), open an evaluation report with
its table and plots; no JavaScript error on the way; a screenshot is written
(``BERTSEARCH_SCREENSHOT`` names where, e.g. docs/console.png; by default the test's folder).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from bertsearch.api.app import create_app
from bertsearch.api.feedback.sqlite_log import SQLiteLog
from bertsearch.api.settings import ServiceSettings
from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.evaluation.config import EvalConfig
from bertsearch.jobs.evaluation.runner import run_evaluation
from bertsearch.jobs.indexing.reuse import ensure_index
from support.datasets import write_dataset
from support.servers import running

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUERY = "a programming language with garbage collection"


@pytest.fixture(scope="module")
def console(tmp_path_factory, tiny_bert_dir, tiny_cross_encoder_dir, corpus_records):
    """A running service with a reranker, a feedback log and one real evaluation report."""
    if CHROMIUM is None:
        pytest.skip("no Chromium to drive: install Debian's `chromium` (apt-get install chromium)")
    root = tmp_path_factory.mktemp("console")
    dataset = write_dataset(root / "ds", corpus_records)
    ensure_index(BeirDataset(dataset), root / "index", model=tiny_bert_dir, progress=False)
    reranker = shutil.copytree(tiny_cross_encoder_dir, root / "reranker")
    record = {"max_length": 64, "rerank_weight": 0.5, "rerank_top_n": 8}
    (reranker / "metadata.json").write_text(json.dumps(record))
    run_evaluation(EvalConfig(dataset=dataset, index_dir=root / "index", out=root / "reports" / "toy-test",
                              configs=("bm25", "hybrid", "hybrid+rerank"), reranker=reranker, depth=8,
                              model=tiny_bert_dir), progress=False)  # fmt: skip
    settings = ServiceSettings(index_dir=root / "index", reranker=str(reranker), reload_seconds=0,
                               feedback_db=root / "feedback.sqlite3",
                               reports_dir=root / "reports")  # fmt: skip
    with running(create_app(settings)) as url:
        yield url, settings


@pytest.fixture()
def page(console):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        yield page
        browser.close()


def test_search_explain_click_and_reports_in_a_browser(console, page, tmp_path):
    url, settings = console
    page.goto(url)
    page.wait_for_function("document.querySelector('#status').textContent.includes('reranking')")
    page.fill("#query", QUERY)
    page.press("#query", "Enter")
    page.wait_for_selector(".hit")
    served = httpx.post(f"{url}/search", json={"query": QUERY, "top_k": 10}).json()
    shown = page.eval_on_selector_all(".hit", "items => items.map(item => item.dataset.id)")
    assert shown == [hit["id"] for hit in served["hits"]]  # the service's order, all of it
    assert "reranked 8/8" in page.inner_text("#answer-meta")
    assert page.locator(".hit").first.locator(".bars .bar").count() >= 3  # bm25/dense/rrf/rerank/blend
    assert page.locator(".hit mark").count() >= 1  # query words highlighted in the snippets

    first = served["hits"][0]
    page.locator(".hit").first.locator(".explain-button").click()
    page.wait_for_selector("#explain .heat .attribution")
    explained = httpx.post(f"{url}/explain", json={"query": QUERY, "id": first["id"]}).json()
    heat = page.locator("#explain .heat").last
    assert heat.locator(".attribution").count() == len(explained["attributions"]["document"])
    assert heat.inner_text().split() == explained["passage"].split()  # the document, word for word
    assert page.locator("#explain table.stages tr").count() == 1 + len(explained["stages"])

    with page.context.expect_page() as opened:
        page.locator(".hit a.title").nth(1).click()
    opened.value.close()
    clicks = _wait_for_clicks(settings.feedback_path)
    second = served["hits"][1]["id"]
    assert [(e.object_id, e.position, e.action_name) for e in clicks] == [(second, 2, "click")]

    page.click("#tab-reports")
    page.click(".report-item[data-name='toy-test']")
    page.wait_for_selector("#report table.metrics")
    rows = page.locator("#report table.metrics tr")
    assert rows.count() == 4 and "hybrid+rerank" in rows.nth(3).inner_text()
    loaded = "[...document.querySelectorAll('#report img')].every(i => i.complete && i.naturalWidth > 0)"
    page.wait_for_function(loaded)
    assert page.locator("#report img").count() >= 2

    page.click("#tab-search")
    shot = Path(os.environ.get("BERTSEARCH_SCREENSHOT", tmp_path / "console.png"))
    page.locator(".hit").first.locator(".explain-button").click()
    page.wait_for_selector("#explain .heat .attribution")
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    assert page.errors == []


def _wait_for_clicks(path: Path, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while True:
        log = SQLiteLog(path)
        clicks = [e for e in log.events() if e.action_name == "click"]
        log.close()
        if clicks or time.monotonic() > deadline:
            return clicks
        time.sleep(0.2)
