"""The feedback loop's intake over HTTP: every answer logged under a query_id, events taken all or none."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from bertsearch.api.app import create_app
from bertsearch.api.feedback.sqlite_log import SQLiteLog
from bertsearch.api.settings import ServiceSettings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def index_dir(tiny_index_dir):
    return tiny_index_dir


@pytest.fixture()
def client(index_dir, tmp_path):
    settings = ServiceSettings(index_dir=index_dir, feedback_db=tmp_path / "log.sqlite3", reload_seconds=0)
    with TestClient(create_app(settings)) as client:
        yield client


def stored(client) -> SQLiteLog:
    return client.app.state.feedback


def test_every_answer_is_logged_as_served(client):
    answer = client.post("/search", json={"query": "volcano magma", "top_k": 3}).json()
    assert len(answer["query_id"]) == 32
    (record,) = list(stored(client).queries())
    assert record.query_id == answer["query_id"] and record.query == "volcano magma"
    assert [(h.position, h.object_id) for h in record.hits] == [
        (n, hit["id"]) for n, hit in enumerate(answer["hits"], start=1)
    ]
    assert record.hits[0].scores == answer["hits"][0]["scores"]
    assert record.index_version == client.get("/readyz").json()["index_version"]


def test_events_are_stored_all_together(client):
    qid = client.post("/search", json={"query": "volcano"}).json()["query_id"]
    events = [
        {"query_id": qid, "action_name": "impression", "object_id": "volcano", "position": 1},
        {"query_id": qid, "action_name": "click", "object_id": "volcano", "position": 1, "session_id": "s",
         "timestamp": "2026-12-01T12:00:00+01:00", "attributes": {"dwell_ms": 3000}},
    ]  # fmt: skip
    response = client.post("/events", json={"events": events})
    assert response.status_code == 200 and response.json() == {"accepted": 2}
    logged = {e.action_name: e for e in stored(client).events()}  # in time order: the click is older
    assert set(logged) == {"impression", "click"}
    assert logged["click"].timestamp.isoformat() == "2026-12-01T11:00:00+00:00"  # stored in UTC
    assert logged["click"].attributes == {"dwell_ms": 3000} and logged["click"].session_id == "s"


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"position": 0}, "position"),
        ({"action_name": "no spaces"}, "action_name"),
        ({"object_id": ""}, "object_id"),
        ({"timestamp": "2026-12-01T12:00:00"}, "timestamp"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_event_gets_422_naming_its_index_and_field_and_nothing_is_stored(client, bad, where):
    qid = client.post("/search", json={"query": "volcano"}).json()["query_id"]
    good = {"query_id": qid, "action_name": "click", "object_id": "volcano", "position": 1}
    response = client.post("/events", json={"events": [good, {**good, **bad}]})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][:3] == ["body", "events", 1] and where in error["loc"] + [error["msg"]]
    assert list(stored(client).events()) == []


def test_an_unknown_query_id_is_refused_the_same_way(client):
    qid = client.post("/search", json={"query": "volcano"}).json()["query_id"]
    events = [
        {"query_id": qid, "action_name": "click", "object_id": "volcano", "position": 1},
        {"query_id": "f" * 32, "action_name": "click", "object_id": "volcano", "position": 2},
    ]
    response = client.post("/events", json={"events": events})
    assert response.status_code == 422
    assert "events[1].query_id" in response.json()["detail"] and "nothing" in response.json()["detail"]
    assert list(stored(client).events()) == []


def test_with_the_log_off_answers_have_no_query_id_and_events_are_refused(index_dir):
    settings = ServiceSettings(index_dir=index_dir, feedback_log="off", reload_seconds=0)
    with TestClient(create_app(settings)) as client:
        assert client.post("/search", json={"query": "volcano"}).json()["query_id"] is None
        event = {"query_id": "a", "action_name": "click", "object_id": "volcano", "position": 1}
        refused = client.post("/events", json={"events": [event]})
        assert refused.status_code == 404 and "BERTSEARCH_FEEDBACK_LOG" in refused.json()["detail"]
