"""Exploration: shown positions drawn from below the page, flagged in the answer and in the log."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from bertsearch.api.app import create_app
from bertsearch.api.exploration import Exploration
from bertsearch.api.settings import ServiceSettings

pytestmark = pytest.mark.unit

SERVED = [f"d{n}" for n in range(1, 51)]  # the served order: d1 first


def test_rate_zero_shows_the_served_page():
    shown, explored = Exploration(0.0, 50).page(SERVED, 10, random.Random(1))
    assert shown == SERVED[:10] and explored == [False] * 10


def test_each_position_is_explored_at_the_rate_from_below_the_page_only():
    exploration, rng = Exploration(0.2, 30), random.Random(7)
    per_position, drawn, pages = Counter(), Counter(), 4000
    for _ in range(pages):
        shown, explored = exploration.page(SERVED, 10, rng)
        assert len(shown) == 10 == len(set(shown))
        kept = [doc for doc, flag in zip(shown, explored, strict=True) if not flag]
        assert kept == SERVED[: len(kept)]  # the served head, in order, pushed down by explored ones
        for position, (doc, flag) in enumerate(zip(shown, explored, strict=True)):
            per_position[position] += flag
            if flag:
                drawn[doc] += 1
    assert set(drawn) == set(SERVED[10:30])  # positions 11..depth, nothing deeper
    for position in range(10):  # ε per shown position (binomial sd ≈ 0.006 at 4,000 pages)
        assert per_position[position] / pages == pytest.approx(0.2, abs=0.03)
    assert min(drawn.values()) > 0.5 * max(drawn.values())  # uniform over the explored range


def test_a_short_candidate_list_is_shown_whole():
    shown, explored = Exploration(0.5, 50).page(SERVED[:6], 10, random.Random(3))
    assert shown == SERVED[:6] and explored == [False] * 6  # nothing below the page to explore


def test_the_service_explores_when_configured_and_says_so(tiny_index_dir, tmp_path):
    base = dict(index_dir=tiny_index_dir, feedback_db=tmp_path / "log.sqlite3", reload_seconds=0)
    request = {"query": "volcano magma", "top_k": 3}
    with TestClient(create_app(ServiceSettings(**base))) as plain:
        served = [h["id"] for h in plain.post("/search", json={**request, "top_k": 8}).json()["hits"]]
        answer = plain.post("/search", json=request).json()
        assert [h["explored"] for h in answer["hits"]] == [False] * 3
    assert len(served) == 8
    with TestClient(create_app(ServiceSettings(**base, explore_rate=1.0, explore_depth=8))) as exploring:
        answer = exploring.post("/search", json=request).json()
        logged = {q.query_id: q for q in exploring.app.state.feedback.queries()}[answer["query_id"]]
    shown = [h["id"] for h in answer["hits"]]
    assert [h["explored"] for h in answer["hits"]] == [True] * 3  # rate 1: every position explored
    assert set(shown) <= set(served[3:]) and len(set(shown)) == 3
    assert [(h.object_id, h.explored) for h in logged.hits] == [(d, True) for d in shown]


def test_the_exploration_settings_are_checked():
    with pytest.raises(ValueError, match="explore_rate"):
        ServiceSettings(index_dir="x", explore_rate=1.5)
