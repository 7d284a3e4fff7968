"""The feedback loop end to end on the toy corpus: simulated users search and click over HTTP,
the service logs it, `train --from-feedback` learns from the clicks, and a promoted version is
served by the running service without a restart."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from bertsearch.api.app import create_app
from bertsearch.api.settings import ServiceSettings
from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.datasets.feedback import read_sessions
from bertsearch.jobs.indexing.reuse import ensure_index
from bertsearch.ranker.registry import RerankerRegistry
from support.datasets import QRELS, write_dataset
from support.servers import running

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture()
def click_simulator(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import click_simulator

    yield click_simulator
    sys.modules.pop("click_simulator", None)


@pytest.fixture()
def service(tmp_path, tiny_bert_dir, corpus_records):
    """A running service over a fresh index of the toy dataset, serving an empty reranker registry."""
    dataset = write_dataset(tmp_path / "ds", corpus_records, splits=("train", "dev"))
    ensure_index(BeirDataset(dataset), tmp_path / "index", model=tiny_bert_dir, progress=False)
    (tmp_path / "rerankers").mkdir()
    settings = ServiceSettings(index_dir=tmp_path / "index", reranker=str(tmp_path / "rerankers"),
                               reload_seconds=0.1)  # fmt: skip
    with running(create_app(settings)) as url:
        yield url, dataset, settings


@pytest.mark.integration
def test_clicks_logged_over_http_train_a_reranker_that_the_service_takes_up(
    local_ray, service, click_simulator, tmp_path, tiny_bert_dir
):
    from bertsearch.jobs.cli import main

    url, dataset, settings = service
    split = BeirDataset(dataset).load("train")
    careful = click_simulator.CascadeUser(click_relevant=1.0, click_noise=0.0, stop_after_click=0.0,
                                          patience=1.0, depth=8)  # fmt: skip
    counts = click_simulator.simulate(url, split.queries, split.qrels, careful, sessions=24, clients=3)
    assert counts["sessions"] == 24 and counts["errors"] == 0
    assert counts["clicks"] == counts["relevant_clicks"] > 0  # no noise: every click is on a relevant hit

    sessions = read_sessions(settings.feedback_path)
    assert len(sessions) == 24 and all(len(s.shown) == 8 for s in sessions)
    assert all(s.impressed == frozenset(s.shown) for s in sessions)  # the users read all 8 (impressions)
    export = tmp_path / "export"  # the Parquet export reads back as the same sessions (Ray Data)
    assert main(["feedback-export", "--db", str(settings.feedback_path), "--out", str(export)]) == 0
    assert read_sessions(export) == sessions
    out = tmp_path / "from-clicks"
    log, index = str(settings.feedback_path), str(settings.index_dir)
    code = main([*train_args(log, index, out, tiny_bert_dir), "--rerank-weight", "0.5"])
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    source = meta["data"]["source"]
    assert source["mode"] == "feedback" and source["sessions"] == 24
    assert source["click_rule"]["min_clicks"] == 2
    relevant = sum(1 for docs in QRELS.values() for grade in docs.values() if grade > 0)
    assert source["positives"] == meta["training_groups"] == relevant  # every relevant doc, clicked 4 times
    groups = [json.loads(line) for line in (out.with_name("from-clicks.work") / "groups.jsonl").open()]
    assert {(g["query"], g["doc_ids"][0]) for g in groups} == {
        (split.queries[q], d) for q, docs in QRELS.items() for d, grade in docs.items() if grade > 0
    }

    registry = tmp_path / "rerankers"
    gate = ["--dataset", str(dataset), "--index-dir", str(settings.index_dir), "--split", "dev", "--force"]
    main(["reranker", "promote", str(out), "--registry", str(registry), *gate])
    served = RerankerRegistry(registry).current_name()
    assert served is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = httpx.get(f"{url}/readyz").json()
        if ready["reranker_version"] == served:
            break
        time.sleep(0.2)
    assert ready["reranker_version"] == served and ready["stage"] == "reranking"
    answer = httpx.post(f"{url}/search", json={"query": "loyal dogs", "top_k": 3}).json()
    assert answer["rerank"]["scored"] == 8 and "rerank" in answer["hits"][0]["scores"]

    # the same clicks, each moved to a random shown hit: what they teach is noise, and the gate
    # (against hybrid, in a registry of its own) refuses it with exit status 1 and serves nothing
    shuffled = tmp_path / "from-shuffled-clicks"
    noise = [*train_args(log, index, shuffled, tiny_bert_dir), "--shuffle-clicks", "--rerank-weight", "1"]
    assert main(noise) == 0
    assert json.loads((shuffled / "metadata.json").read_text())["data"]["source"]["shuffled_clicks"] is True
    control = tmp_path / "control-registry"
    assert main(["reranker", "promote", str(shuffled), "--registry", str(control), *gate[:-1]]) == 1
    (refused,) = RerankerRegistry(control).versions()
    assert refused.gate["accepted"] is False and refused.gate["incumbent"] == "hybrid"
    assert RerankerRegistry(control).current_name() is None


def train_args(log: str, index: str, out: Path, base: Path) -> list[str]:
    return [
        "train", "--from-feedback", log, "--index-dir", index, "--out", str(out), "--base-model", str(base),
        "--workers", "2", "--cpus-per-worker", "1", "--epochs", "1", "--mine-depth", "8", "--negatives", "3",
        "--max-length", "64", "--min-clicks", "2", "--rerank-top-n", "8",
    ]  # fmt: skip


@pytest.mark.unit
def test_the_cascade_user_reads_down_to_a_satisfying_click(click_simulator):
    import random

    ranked = ["a", "b", "c", "d"]
    careful = click_simulator.CascadeUser(click_relevant=1.0, click_noise=0.0, stop_after_click=1.0,
                                          patience=1.0, depth=4)  # fmt: skip
    assert careful.browse(ranked, {"c": 1}, random.Random(0)) == ([1, 2, 3], [3])
    impatient = click_simulator.CascadeUser(click_relevant=1.0, click_noise=0.0, patience=0.0, depth=4)
    assert impatient.browse(ranked, {"c": 1}, random.Random(0)) == ([1], [])
    noisy = click_simulator.CascadeUser(click_relevant=0.0, click_noise=1.0, patience=1.0, depth=2)
    assert noisy.browse(ranked, {"a": 1}, random.Random(0)) == ([1, 2], [2])  # a noise click never satisfies
    with pytest.raises(ValueError, match="click_noise"):
        click_simulator.CascadeUser(click_noise=1.5)


@pytest.mark.unit
def test_the_click_flags_reach_the_rule_and_a_bad_confidence_is_refused_before_anything_runs():
    from bertsearch.jobs.cli import build_parser, check_argv
    from bertsearch.jobs.cli.training import _feedback_source
    from bertsearch.ranker.training.clicks import ClickRule

    base = ["train", "--index-dir", "i", "--out", "o"]
    args = build_parser().parse_args([*base, "--from-feedback", "log.sqlite3", "--click-confidence", "0.95"])
    assert _feedback_source(args).rule == ClickRule(min_clicks=2, min_rate=0.5, confidence=0.95)
    reason = check_argv([*base, "--from-feedback", "log.sqlite3", "--click-confidence", "1.5"])
    assert reason is not None and "confidence is in [0.5, 1)" in reason  # a schedule file fails at load
    args = build_parser().parse_args([*base, "d", "--click-confidence", "0.95"])
    with pytest.raises(ValueError, match="--examined-by and --shuffle-clicks need --from-feedback"):
        _feedback_source(args)
    feedback = [*base, "--from-feedback", "log.sqlite3", "--examined-by"]
    assert _feedback_source(build_parser().parse_args([*feedback, "impressions"])).rule == ClickRule(
        examined_by="impressions"
    )
    assert "invalid choice: 'viewport'" in check_argv([*feedback, "viewport"])


@pytest.mark.unit
def test_the_traffic_replay_finds_below_the_page_only_what_exploration_shows(click_simulator, tmp_path):
    import click_traffic  # bench/click_traffic.py, beside the simulator

    from bertsearch.api.exploration import Exploration
    from bertsearch.ranker.training.clicks import ClickRule

    try:
        run = tmp_path / "run.trec"  # two queries, 20 hits each; "q1"'s second relevant document sits 15th
        lines = [f"{q} Q0 {q}-d{r} {r} {1 / r:.4f} hybrid\n" for q in ("q1", "q2") for r in range(1, 21)]
        run.write_text("".join(lines))
        ranked = click_traffic.read_run(run)
        assert ranked["q1"][:2] == ["q1-d1", "q1-d2"] and len(ranked["q1"]) == 20
        relevant = {"q1": {"q1-d1": 1, "q1-d15": 1}, "q2": {"q2-d3": 2}}
        below = {("q1", "q1-d15")}
        user = click_simulator.CascadeUser(click_noise=0.0)
        rule = ClickRule(min_clicks=1, confidence=0.95, examined_by="impressions")
        plain = click_traffic.replay(ranked, relevant, user, None, sessions=400, seed=3)
        assert all(len(s.shown) == 10 and s.impressed <= set(s.shown) for s in plain)
        seen = click_traffic.measure(plain, rule, relevant, below)
        assert (seen["positives"], seen["precision"], seen["below_the_page_found"]) == (2, 1.0, 0)
        explored = click_traffic.replay(ranked, relevant, user, Exploration(0.5, 20), sessions=400, seed=3)
        assert sum("q1-d15" in s.shown for s in explored) > 50  # shown on the page by exploration only
        found = click_traffic.measure(explored, rule, relevant, below)
        assert found["below_the_page_found"] == 1 and found["recall"] == 1.0
    finally:
        sys.modules.pop("click_traffic", None)
