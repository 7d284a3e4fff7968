"""What every feedback-log backend must do: written once, run for each backend (one fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bertsearch.api.feedback.records import Event, FeedbackLog, QueryRecord, ServedHit, UnknownQueryError

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def query(qid: str, when: datetime = T0) -> QueryRecord:
    hits = (ServedHit(1, "d1", 0.9, {"bm25": 3.0, "rerank": 0.9}),
            ServedHit(2, "d2", 0.5, {"bm25": 2.0}, explored=True))  # fmt: skip
    return QueryRecord(qid, f"text of {qid}", when, hits, "v1", reranker="/models/r", rerank_requested=2,
                       rerank_scored=1, degraded_reasons=("budget",))  # fmt: skip


def click(qid: str, position: int = 1, when: datetime = T0) -> Event:
    return Event(qid, "click", f"d{position}", position, when + timedelta(seconds=5), session_id="s1",
                 attributes={"dwell_ms": 4200})  # fmt: skip


class FeedbackLogContract:
    """Subclasses define a ``feedback_log`` fixture that yields an empty log."""

    def test_implements_the_protocol(self, feedback_log: FeedbackLog) -> None:
        assert isinstance(feedback_log, FeedbackLog)

    def test_a_logged_query_and_its_events_come_back_as_written(self, feedback_log: FeedbackLog) -> None:
        feedback_log.log_query(query("q1"))
        assert feedback_log.add_events([click("q1"), click("q1", 2)]) == 2
        (logged,) = list(feedback_log.queries())
        assert logged == query("q1")
        events = list(feedback_log.events())
        assert [(e.query_id, e.position, e.object_id) for e in events] == [("q1", 1, "d1"), ("q1", 2, "d2")]
        assert events[0] == click("q1")

    def test_events_for_an_unknown_query_are_refused_and_none_of_the_batch_is_stored(
        self, feedback_log: FeedbackLog
    ) -> None:
        feedback_log.log_query(query("q1"))
        with pytest.raises(UnknownQueryError) as refused:
            feedback_log.add_events([click("q1"), click("nope"), click("q1", 2)])
        assert refused.value.index == 1 and "events[1].query_id" in str(refused.value)
        assert list(feedback_log.events()) == []

    def test_since_and_prune_work_by_time(self, feedback_log: FeedbackLog) -> None:
        old, new = T0 - timedelta(days=100), T0
        feedback_log.log_query(query("old", old))
        feedback_log.log_query(query("new", new))
        feedback_log.add_events([click("old", when=old), click("new", when=new)])
        assert [q.query_id for q in feedback_log.queries(since=T0 - timedelta(days=1))] == ["new"]
        assert feedback_log.prune(before=T0 - timedelta(days=90)) == 2  # the old query and its click
        assert [q.query_id for q in feedback_log.queries()] == ["new"]
        assert [e.query_id for e in feedback_log.events()] == ["new"]
