"""The feedback-log backends against one contract: SQLite here, Elasticsearch where a server is."""

from __future__ import annotations

import os
import uuid

import pyarrow.parquet as pq
import pytest

from bertsearch.api.feedback.records import export_parquet
from bertsearch.api.feedback.sqlite_log import SQLiteLog
from support.feedback_contract import FeedbackLogContract, click, query


@pytest.mark.unit
class TestSQLiteLog(FeedbackLogContract):
    @pytest.fixture()
    def feedback_log(self, tmp_path):
        log = SQLiteLog(tmp_path / "feedback.sqlite3")
        yield log
        log.close()


@pytest.mark.integration
@pytest.mark.elasticsearch
class TestElasticsearchLog(FeedbackLogContract):
    @pytest.fixture()
    def feedback_log(self):
        url = os.environ.get("BERTSEARCH_ES_URL")
        if not url:
            pytest.skip("BERTSEARCH_ES_URL is not set: no Elasticsearch server to test against")
        from bertsearch.api.feedback.elastic_log import ElasticsearchLog

        log = ElasticsearchLog(url, prefix=f"test-{uuid.uuid4().hex[:8]}-")
        yield log
        log.client.indices.delete(index=f"{log.queries_index},{log.events_index}", ignore_unavailable=True)
        log.close()

    def test_feedback_export_reads_the_shared_log(self, feedback_log, tmp_path):
        from bertsearch.jobs.cli import main

        feedback_log.log_query(query("q1"))
        feedback_log.add_events([click("q1")])
        prefix = feedback_log.queries_index.removesuffix("ubi_queries")
        url = os.environ["BERTSEARCH_ES_URL"]
        export = ["feedback-export", "--es-url", url, "--es-prefix", prefix, "--out", str(tmp_path / "x")]
        assert main(export) == 0
        assert pq.read_table(tmp_path / "x" / "events.parquet").num_rows == 1
        assert pq.read_table(tmp_path / "x" / "queries.parquet").num_rows == 2


@pytest.mark.unit
def test_the_log_exports_to_parquet_for_training(tmp_path):
    log = SQLiteLog(tmp_path / "feedback.sqlite3")
    log.log_query(query("q1"))
    log.add_events([click("q1", 2)])
    queries, events = export_parquet(log, tmp_path / "export")
    served = pq.read_table(queries).to_pylist()
    assert [(r["query_id"], r["position"], r["object_id"], r["explored"]) for r in served] == [
        ("q1", 1, "d1", False), ("q1", 2, "d2", True)
    ]  # fmt: skip
    assert [(r["action_name"], r["position"]) for r in pq.read_table(events).to_pylist()] == [("click", 2)]


@pytest.mark.unit
def test_the_sqlite_log_is_in_wal_mode_and_survives_a_reopen(tmp_path):
    log = SQLiteLog(tmp_path / "feedback.sqlite3")
    log.log_query(query("q1"))
    log.close()
    reopened = SQLiteLog(tmp_path / "feedback.sqlite3")
    assert [q.query_id for q in reopened.queries()] == ["q1"]
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


@pytest.mark.unit
def test_feedback_export_writes_the_log_as_parquet_from_the_command_line(tmp_path, capsys):
    from bertsearch.jobs.cli import main

    log = SQLiteLog(tmp_path / "feedback.sqlite3")
    log.log_query(query("q1"))
    log.add_events([click("q1")])
    log.close()
    export = ["feedback-export", "--db", str(tmp_path / "feedback.sqlite3"), "--out", str(tmp_path / "x")]
    assert main(export) == 0
    assert pq.read_table(tmp_path / "x" / "events.parquet").num_rows == 1
    assert pq.read_table(tmp_path / "x" / "queries.parquet").num_rows == 2  # one row per served hit
    missing = ["feedback-export", "--db", str(tmp_path / "none.sqlite3"), "--out", str(tmp_path / "y")]
    assert main(missing) == 2
    assert "no feedback log there" in capsys.readouterr().err


@pytest.mark.unit
def test_feedback_export_from_an_unreachable_elasticsearch_says_so(tmp_path, capsys):
    import socket

    from bertsearch.jobs.cli import main

    with socket.socket() as sock:  # a loopback port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    assert main(["feedback-export", "--es-url", url, "--out", str(tmp_path / "x")]) == 2
    assert f"cannot reach Elasticsearch at {url}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # a source is required, and only one
        main(["feedback-export", "--db", "a.sqlite3", "--es-url", url, "--out", str(tmp_path / "y")])
    assert exit_.value.code == 2
