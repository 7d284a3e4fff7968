"""`bertsearch schedule`: files checked with helpful errors; runs recorded, one at a time per job."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from bertsearch.jobs.cli.schedule import load
from bertsearch.jobs.schedule.config import ScheduleConfigError
from bertsearch.jobs.schedule.runner import JobRunner, format_status, job_status, next_fire_times
from support.files import write_jsonl

GOOD_YAML = """
timezone: Europe/Paris
state_file: state/schedule.json
jobs:
  - name: nightly
    cron: "0 3 * * *"
    index: {source: corpus, index_dir: index, embed_with: ray, dense_index: hnsw, keep: 2}
  - name: updates
    every_seconds: 300
    index: {source: updates, index_dir: index, incremental: true}
  - name: evaluate
    cron: "30 4 * * 1"
    command: [search, tea, --index-dir, index]
    timeout_seconds: 600
    enabled: false
"""

GOOD_TOML = """
timezone = "Europe/Paris"
state_file = "state/schedule.json"

[[jobs]]
name = "nightly"
cron = "0 3 * * *"
index = {source = "corpus", index_dir = "index", embed_with = "ray", dense_index = "hnsw", keep = 2}

[[jobs]]
name = "updates"
every_seconds = 300
index = {source = "updates", index_dir = "index", incremental = true}

[[jobs]]
name = "evaluate"
cron = "30 4 * * 1"
command = ["search", "tea", "--index-dir", "index"]
timeout_seconds = 600
enabled = false
"""


def write(tmp_path, text: str, name: str = "schedule.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.unit
def test_yaml_and_toml_give_the_same_schedule(tmp_path):
    from_yaml = load(write(tmp_path, GOOD_YAML))
    from_toml = load(write(tmp_path, GOOD_TOML, "schedule.toml"))
    assert from_yaml.jobs == from_toml.jobs
    nightly, updates, evaluate = from_yaml.jobs
    assert nightly.argv[:4] == ("index", str(tmp_path / "corpus"), "--index-dir", str(tmp_path / "index"))
    assert {"--embed-with", "ray", "--dense-index", "hnsw", "--keep", "2"} <= set(nightly.argv)
    assert "--incremental" in updates.argv and updates.every_seconds == 300
    assert evaluate.argv == ("search", "tea", "--index-dir", "index") and not evaluate.enabled
    assert from_yaml.state_file == tmp_path / "state" / "schedule.json"
    assert from_yaml.log_dir == tmp_path / "state" / "schedule-logs"
    times = next_fire_times(from_yaml)
    assert times["nightly"].endswith(("+01:00", "+02:00")) and "T03:00:00" in times["nightly"]
    assert times["evaluate"] is None


BAD_YAML = """
timezone: Mars/Olympus
jobs:
  - name: nightly
    cron: "0 25 * * *"
    index: {source: corpus, index_dir: index, embed_wiht: ray}
  - name: nightly
    cron: "0 3 * *"
    every_seconds: 60
    index: {source: corpus}
  - name: both
    every_seconds: -5
    index: {source: a, index_dir: b}
    command: [eval]
  - name: "bad name!"
    every_seconds: 10
    command: [index]
  - name: types
    every_seconds: 10
    timeout_seconds: "soon"
    index: {source: a, index_dir: b, keep: "three", incremental: "yes", embed_with: gpu}
  - name: recursion
    every_seconds: 10
    command: [schedule, --config, x.yaml]
  - name: bad-command
    every_seconds: 10
    command: [search]
  - name: flags
    every_seconds: 10
    index: {source: a, index_dir: b, all_files: true}
    colour: red
"""


@pytest.mark.unit
def test_every_problem_is_reported_with_where_and_what_to_change(tmp_path):
    with pytest.raises(ScheduleConfigError) as caught:
        load(write(tmp_path, BAD_YAML))
    message = str(caught.value)
    expected = [
        "timezone: 'Mars/Olympus' is not an IANA time zone",
        "jobs[0] (nightly).cron: '0 25 * * *' is not a valid cron expression",
        "minute hour day-of-month month day-of-week",
        "jobs[0] (nightly).index: unknown key 'embed_wiht'; did you mean 'embed_with'?",
        "jobs[1] (nightly): give exactly one of 'cron'",
        "jobs[1] (nightly).index: missing index_dir",
        "jobs[2] (both).every_seconds: must be a positive number",
        "jobs[2] (both): give exactly one of 'index' (an indexing job), 'train', 'promote' or 'command'",
        "jobs[3].name: give a name of letters, digits",
        "jobs[4] (types).timeout_seconds: must be a positive number of seconds, got 'soon'",
        "jobs[4] (types).index.keep: must be an integer, got 'three'",
        "jobs[4] (types).index.incremental: must be true or false, got 'yes'",
        "jobs[5] (recursion).command: a scheduled job cannot run `bertsearch schedule`",
        "jobs[6] (bad-command).command: bertsearch rejects ['search']",
        "jobs[7] (flags): unknown key 'colour'",
        "jobs[7] (flags).index: all_files only applies to incremental updates: add --incremental",
    ]
    for part in expected:
        assert part in message, part
    assert len(caught.value.problems) >= len(expected)


LEARNING_YAML = """
jobs:
  - name: learn
    cron: "0 1 * * *"
    train: {from_feedback: index/feedback.sqlite3, feedback_days: 7, index_dir: index,
            out: candidates/nightly, click_confidence: 0.95, args: [--epochs, 1, --workers, 2]}
  - name: promote
    cron: "0 4 * * *"
    promote: {candidate: candidates/nightly, registry: rerankers, dataset: judged, index_dir: index,
              split: dev, margin: 0.002}
  - name: broken
    every_seconds: 60
    train: {index_dir: index, out: x, epochs: 2}
  - name: bad-flags
    every_seconds: 60
    promote: {candidate: c, registry: r, dataset: d, index_dir: i, args: [--no-such-flag]}
  - name: two-gates
    every_seconds: 60
    promote: {candidate: c, registry: r, dataset: d, feedback: f, index_dir: i}
"""


@pytest.mark.unit
def test_train_and_promote_are_typed_job_kinds_checked_like_the_command_line(tmp_path):
    with pytest.raises(ScheduleConfigError) as caught:
        load(write(tmp_path, LEARNING_YAML))
    problems = "\n".join(caught.value.problems)
    assert "jobs[2] (broken).train: unknown key 'epochs'" in problems
    assert "jobs[2] (broken).train: missing from_feedback" in problems
    assert "jobs[3] (bad-flags).promote: bertsearch rejects" in problems and "--no-such-flag" in problems
    assert "jobs[4] (two-gates).promote: give exactly one of dataset, feedback" in problems
    assert len(caught.value.problems) == 4
    good = "\n".join(LEARNING_YAML.splitlines()[:10])
    learn, promote = load(write(tmp_path, good)).jobs
    assert learn.argv == (
        "train", "--from-feedback", str(tmp_path / "index" / "feedback.sqlite3"), "--feedback-days", "7",
        "--index-dir", str(tmp_path / "index"), "--out", str(tmp_path / "candidates" / "nightly"),
        "--click-confidence", "0.95", "--fresh", "--epochs", "1", "--workers", "2",
    )  # fmt: skip
    assert promote.argv == (
        "reranker", "promote", str(tmp_path / "candidates" / "nightly"),
        "--registry", str(tmp_path / "rerankers"),
        "--dataset", str(tmp_path / "judged"), "--index-dir", str(tmp_path / "index"), "--split", "dev",
        "--margin", "0.002",
    )  # fmt: skip
    on_clicks = """
jobs:
  - name: gate-on-clicks
    cron: "0 4 * * *"
    promote: {candidate: candidates/nightly, registry: rerankers, feedback: index/feedback.sqlite3,
              feedback_days: 1, click_confidence: 0.95, examined_by: impressions, index_dir: index}
"""
    (gate,) = load(write(tmp_path, on_clicks)).jobs
    assert gate.argv == (
        "reranker", "promote", str(tmp_path / "candidates" / "nightly"),
        "--registry", str(tmp_path / "rerankers"), "--feedback", str(tmp_path / "index" / "feedback.sqlite3"),
        "--feedback-days", "1", "--click-confidence", "0.95", "--examined-by", "impressions",
        "--index-dir", str(tmp_path / "index"),
    )  # fmt: skip
    with pytest.raises(ScheduleConfigError, match="invalid choice: 'viewport'"):
        load(write(tmp_path, on_clicks.replace("examined_by: impressions", "examined_by: viewport")))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("schedule.yaml", "jobs: [", "not valid YAML"),
        ("schedule.toml", "jobs = [", "not valid TOML"),
        ("schedule.json", "{}", "name the file *.yaml, *.yml or *.toml"),
        ("schedule.yaml", "- just a list", "mapping with a 'jobs' list"),
        ("schedule.yaml", "jobs: []", "non-empty list of jobs"),
        ("schedule.yaml", "jobz: []", "unknown key 'jobz'; did you mean 'jobs'?"),
    ],
)
def test_unreadable_files_say_why(tmp_path, name, text, message):
    with pytest.raises(ScheduleConfigError, match=message.replace("*", r"\*").replace("[", r"\[")):
        load(write(tmp_path, text, name))


@pytest.mark.unit
def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ScheduleConfigError, match="does not exist"):
        load(tmp_path / "nope.yaml")


def schedule_for(tmp_path, corpus_records, tiny_bert_dir, *extra: dict):
    write_jsonl(tmp_path / "corpus.jsonl", corpus_records)
    index = {
        "source": "corpus.jsonl",
        "index_dir": "index",
        "embed_with": "local",
        "model": str(tiny_bert_dir),
    }
    jobs = [
        {"name": "build", "cron": "0 3 * * *", "index": index},
        {"name": "broken", "every_seconds": 1, "command": ["search", "tea", "--index-dir", "missing-index"]},
        *extra,
    ]
    return load(write(tmp_path, yaml.safe_dump({"jobs": jobs})))


@pytest.mark.integration
def test_runs_are_recorded_with_status_duration_and_log(tmp_path, corpus_records, tiny_bert_dir):
    config = schedule_for(tmp_path, corpus_records, tiny_bert_dir)
    runner = JobRunner(config)
    ok = runner.run(config.job("build"))
    assert ok.status == "ok" and ok.exit_code == 0 and ok.duration_s > 0
    assert "indexed 8 documents" in ok.summary
    failed = runner.run(config.job("broken"))
    assert failed.status == "failed" and failed.exit_code == 2 and "no index in" in failed.summary
    assert "no index in" in Path(failed.log).read_text()

    state = job_status(config)
    assert state["jobs"]["build"]["last_run"]["status"] == "ok"
    assert state["jobs"]["build"]["runs"] == 1 and state["jobs"]["broken"]["failures"] == 1
    table = format_status(state)
    assert "build" in table and "ok" in table and "failed" in table and "indexed 8 documents" in table


@pytest.mark.unit
def test_a_job_never_runs_twice_at_once(tmp_path, corpus_records, tiny_bert_dir):
    config = schedule_for(tmp_path, corpus_records, tiny_bert_dir)
    runner = JobRunner(config)
    lock_path = runner.lock_path("build")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as held:  # a run of "build" is alive (here, or in another scheduler)
        fcntl.flock(held, fcntl.LOCK_EX)
        record = runner.run(config.job("build"))
        status = job_status(config)["jobs"]["build"]
    assert record.status == "skipped" and "still running" in record.summary
    assert status["skipped"] == 1 and status["runs"] == 0
    assert not (tmp_path / "index").exists()


@pytest.mark.integration
def test_a_run_past_its_timeout_is_killed(tmp_path, corpus_records, tiny_bert_dir):
    slow = {
        "name": "slow",
        "every_seconds": 60,
        "timeout_seconds": 0.5,
        "index": {"source": "c", "index_dir": "i"},
    }
    config = schedule_for(tmp_path, corpus_records, tiny_bert_dir, slow)
    record = JobRunner(config).run(config.job("slow"))
    assert record.status == "timeout" and "0.5 s timeout" in record.summary
    assert record.duration_s < 30


@pytest.mark.integration
def test_the_scheduler_service_fires_jobs_and_stops_on_sigterm(tmp_path, corpus_records, tiny_bert_dir):
    config = schedule_for(tmp_path, corpus_records, tiny_bert_dir)
    process = subprocess.Popen(
        [f"{os.path.dirname(sys.executable)}/bertsearch", "schedule", "--config", str(config.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = json.loads(config.state_file.read_text()) if config.state_file.exists() else {}
            broken = state.get("jobs", {}).get("broken", {})
            if broken.get("runs", 0) >= 1 and state["jobs"]["build"].get("next_run"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the scheduler never recorded a run of 'broken'")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert broken["last_run"]["status"] == "failed"
    assert state["jobs"]["build"]["runs"] == 0 and "T03:00:00" in state["jobs"]["build"]["next_run"]
    assert "stopping the scheduler" in output
