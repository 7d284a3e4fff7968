"""POST /explain on a real server: its latency, and whether its scores are those /search served.

    python bench/explain_latency.py --index-dir var/index/scifact --reranker var/models/scifact-judged \
        --queries var/data/scifact-dev/queries.jsonl [--screenshot docs/console.png --query "..."]

Starts `bertsearch serve` on a free loopback port, takes every 20th of the first 400 queries,
asks /search for each one's top hit and /explain about it, and prints the median and maximum
wall time of /explain, the attribution's own median, how many pairs were cut at the model's
length and for how many the rerank score equals the one /search served. With --screenshot it
also photographs the console explaining --query's top hit (Debian's chromium via Playwright).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import httpx
from server import start_server  # bench/server.py


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--reranker", required=True)
    parser.add_argument("--queries", type=Path, required=True, help="queries.jsonl ({_id, text} per line)")
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--query", default=None, help="the query shown in the screenshot")
    args = parser.parse_args()

    lines = args.queries.read_text().splitlines()
    queries = [json.loads(line)["text"] for line in lines[:400:20] if line.strip()]
    server, url = start_server(args.index_dir, args.reranker, {"BERTSEARCH_FEEDBACK_LOG": "off"}, [])
    try:
        rows = [_explain_top_hit(url, query) for query in queries]
        print(json.dumps({
            "explains": len(rows),
            "median_wall_ms": round(statistics.median(r["wall_ms"] for r in rows), 1),
            "max_wall_ms": round(max(r["wall_ms"] for r in rows), 1),
            "median_attribution_ms": statistics.median(r["attribution_ms"] for r in rows),
            "pairs_cut_at_max_length": sum(r["truncated"] for r in rows),
            "rerank_score_as_served": sum(r["same_score"] for r in rows),
        }, indent=2))  # fmt: skip
        if args.screenshot:
            _screenshot(url, args.query or queries[0], args.screenshot)
    finally:
        server.terminate()
        server.wait(timeout=60)


def _explain_top_hit(url: str, query: str) -> dict:
    with httpx.Client(base_url=url, timeout=60) as http:
        hit = http.post("/search", json={"query": query, "top_k": 1}).json()["hits"][0]
        started = time.perf_counter()
        body = http.post("/explain", json={"query": query, "id": hit["id"]}).json()
        wall_ms = (time.perf_counter() - started) * 1000
    served = hit["scores"].get("rerank")
    explained = body["stages"].get("rerank", {}).get("score")
    same = served is not None and explained is not None and abs(served - explained) < 1e-5
    return {"wall_ms": wall_ms, "attribution_ms": body["attributions"]["ms"],
            "truncated": body["attributions"]["truncated"], "same_score": same}  # fmt: skip


def _screenshot(url: str, query: str, path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                             args=["--no-sandbox"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.goto(url)
        page.fill("#query", query)
        page.press("#query", "Enter")
        page.wait_for_selector(".hit")
        page.locator(".hit").first.locator(".explain-button").click()
        page.wait_for_selector("#explain .heat .attribution", timeout=60_000)
        page.screenshot(path=str(path))
        browser.close()


if __name__ == "__main__":
    main()
