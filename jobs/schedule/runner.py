"""Scheduled jobs: APScheduler fires them, one run at a time per job, status kept in a JSON file.

Each run is a ``bertsearch`` subprocess (its own process group), so a crash, a leak or a Ray
session ends with the run, and a timeout can kill everything the run started. Its output goes
to ``<log_dir>/<job>/<start>.log``. A per-job lock file (``flock``, inherited by the run's
process, freed by the kernel when both are gone) keeps a second run of the same job from
starting while one is alive, even from another scheduler process or a manual ``--run-now``.

The state file holds, per job: the last run's status (``ok``, ``failed``, ``timeout``,
``interrupted``), start, duration, exit code, summary line, log path; the run in progress; the next
fire time; counts of runs, failures and skipped fires. ``bertsearch schedule-status`` reads it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bertsearch.indexer import atomic
from bertsearch.jobs.schedule.config import JobSpec, ScheduleConfig

log = logging.getLogger(__name__)

LOCK_DIR = "locks"
TAIL_LINES = 20


@dataclass(frozen=True)
class RunRecord:
    """How one run went."""

    job: str
    status: str  # ok | failed | timeout | interrupted | skipped
    started_at: str
    finished_at: str
    duration_s: float
    exit_code: int | None
    summary: str  # the run's last output line (ok), or why it failed / was skipped
    log: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StateFile:
    """The JSON status file, updated read-modify-write under a lock, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"jobs": {}}

    @contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            yield state
            atomic.write_json(self.path, state, sort_keys=True)

    def job(self, state: dict[str, Any], name: str) -> dict[str, Any]:
        return state.setdefault("jobs", {}).setdefault(
            name,
            {"runs": 0, "failures": 0, "skipped": 0, "last_run": None, "running": None, "next_run": None},
        )


class JobRunner:
    """Runs jobs of one schedule as subprocesses and records how each went."""

    def __init__(self, config: ScheduleConfig, *, python: str = sys.executable) -> None:
        self.config = config
        self.state = StateFile(config.state_file)
        self.python = python
        self._children: dict[str, subprocess.Popen] = {}
        self._stopping = threading.Event()

    def lock_path(self, name: str) -> Path:
        return self.config.state_file.parent / LOCK_DIR / f"{name}.lock"

    def run(self, job: JobSpec) -> RunRecord:
        """Run ``job`` once now, unless a run of it is alive (then record and return a skip)."""
        lock_path = self.lock_path(job.name)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self.record_skip(job, "a previous run of this job is still running")
            return self._run_locked(job, lock.fileno())

    def record_skip(self, job: JobSpec, why: str) -> RunRecord:
        now = _now()
        record = RunRecord(job.name, "skipped", now, now, 0.0, None, why, None)
        with self.state.update() as state:
            entry = self.state.job(state, job.name)
            entry["skipped"] += 1
            entry["last_skip"] = asdict(record)
        log.warning("job %s: skipped: %s", job.name, why)
        return record

    def _run_locked(self, job: JobSpec, lock_fd: int) -> RunRecord:
        started_at, started = _now(), time.monotonic()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        log_path = self.config.log_dir / job.name / f"{stamp}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", "bertsearch.jobs.cli", *job.argv]
        with self.state.update() as state:
            self.state.job(state, job.name)["running"] = {
                "started_at": started_at,
                "log": str(log_path),
                "command": ["bertsearch", *job.argv],
            }
        log.info("job %s: starting `bertsearch %s` (log %s)", job.name, " ".join(job.argv), log_path)
        exit_code: int | None = None
        status = "failed"
        with open(log_path, "w", encoding="utf-8") as out:
            out.write(f"# {started_at} bertsearch {' '.join(job.argv)}\n")
            out.flush()
            try:
                # The run inherits the job lock: it stays held while the run lives, even if we die.
                child = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(lock_fd,),
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as err:
                out.write(f"could not start: {err}\n")
                child = None
            if child is not None:
                self._children[job.name] = child
                try:
                    exit_code = child.wait(timeout=job.timeout_seconds)
                    status = "ok" if exit_code == 0 else "failed"
                except subprocess.TimeoutExpired:
                    _kill_group(child)
                    exit_code, status = child.wait(), "timeout"
                finally:
                    self._children.pop(job.name, None)
                if self._stopping.is_set() and status != "ok":
                    status = "interrupted"
        duration = round(time.monotonic() - started, 3)
        summary = _summary(log_path, status, job, duration)
        record = RunRecord(job.name, status, started_at, _now(), duration, exit_code, summary, str(log_path))
        with self.state.update() as state:
            entry = self.state.job(state, job.name)
            entry["running"] = None
            entry["last_run"] = asdict(record)
            entry["runs"] += 1
            entry["failures"] += status != "ok"
        (log.info if status == "ok" else log.error)(
            "job %s: %s in %.1f s: %s", job.name, status, duration, summary
        )
        return record

    def stop(self) -> None:
        """Ask running jobs to stop (SIGTERM to their groups); they are idempotent, so a rerun is safe."""
        self._stopping.set()
        for child in list(self._children.values()):
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)


def _kill_group(child: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def _summary(log_path: Path, status: str, job: JobSpec, duration: float) -> str:
    text = log_path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines()[1:] if line.strip()]  # after our header line
    if status == "timeout":
        return f"killed after the {job.timeout_seconds:g} s timeout"
    if status == "ok":
        return lines[-1] if lines else "finished"
    return " | ".join(lines[-3:]) if lines else "no output"


def run_scheduler(config: ScheduleConfig) -> None:
    """Run the schedule until SIGTERM or SIGINT, then stop running jobs and return."""
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED
    from apscheduler.schedulers.blocking import BlockingScheduler

    runner = JobRunner(config)
    scheduler = BlockingScheduler(
        timezone=config.timezone,
        # One run at a time per job; a fire missed while the scheduler was down runs once.
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 3600},
        executors={"default": {"type": "threadpool", "max_workers": max(1, len(config.jobs))}},
    )
    jobs = {job.name: job for job in config.jobs}
    for job in config.jobs:
        if job.enabled:
            scheduler.add_job(
                runner.run, trigger(job, config.timezone), args=[job], id=job.name, name=job.name
            )

    def record_next(_event=None) -> None:
        with runner.state.update() as state:
            state["scheduler"] = {"pid": os.getpid(), "heartbeat": _now(), "config": str(config.path)}
            for job in config.jobs:
                scheduled = scheduler.get_job(job.name)
                next_run = scheduled.next_run_time if scheduled else None
                runner.state.job(state, job.name)["next_run"] = next_run.isoformat() if next_run else None

    def skipped(event) -> None:
        runner.record_skip(jobs[event.job_id], "the previous run was still running when this one was due")

    scheduler.add_listener(record_next, EVENT_JOB_SUBMITTED)
    scheduler.add_listener(skipped, EVENT_JOB_MAX_INSTANCES)

    def shutdown(signum, _frame) -> None:
        log.info("signal %d: stopping the scheduler and its running jobs", signum)
        runner.stop()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    scheduler.add_job(record_next, "date", id="__record_next__")  # once the scheduler has next fire times
    log.info(
        "scheduler started: %d jobs from %s; status in %s", len(config.jobs), config.path, config.state_file
    )
    scheduler.start()


def trigger(job: JobSpec, timezone: str):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if job.cron:
        return CronTrigger.from_crontab(job.cron, timezone=timezone)
    return IntervalTrigger(seconds=job.every_seconds, timezone=timezone)


def next_fire_times(config: ScheduleConfig) -> dict[str, str | None]:
    """When each enabled job would next run if the scheduler started now."""
    now = datetime.now(UTC)
    out: dict[str, str | None] = {}
    for job in config.jobs:
        when = trigger(job, config.timezone).get_next_fire_time(None, now) if job.enabled else None
        out[job.name] = when.isoformat() if when else None
    return out


def job_status(config: ScheduleConfig) -> dict[str, Any]:
    """The state file, with a run whose process is gone (scheduler killed) marked as such."""
    state = StateFile(config.state_file).read()
    runner = JobRunner(config)
    jobs = state.setdefault("jobs", {})
    for job in config.jobs:
        entry = jobs.setdefault(job.name, {"runs": 0, "failures": 0, "skipped": 0, "last_run": None})
        entry["schedule"] = job.when
        entry["enabled"] = job.enabled
        if entry.get("running") and not _locked(runner.lock_path(job.name)):
            entry["running"]["lost"] = "no process holds this job's lock: the run died with its scheduler"
    return state


def _locked(path: Path) -> bool:
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def format_status(state: dict[str, Any]) -> str:
    """A table: one line per job."""
    rows = [("JOB", "SCHEDULE", "LAST", "STARTED", "DURATION", "NEXT", "RUNS/FAILED/SKIPPED")]
    for name, entry in sorted(state.get("jobs", {}).items()):
        last = entry.get("last_run") or {}
        running = entry.get("running")
        status = "running" if running and not running.get("lost") else last.get("status", "never run")
        if running and running.get("lost"):
            status = "lost"
        rows.append(
            (
                name,
                entry.get("schedule", "?") + ("" if entry.get("enabled", True) else " (disabled)"),
                status,
                (running or last).get("started_at", "-") if (running or last) else "-",
                f"{last['duration_s']:.1f} s" if "duration_s" in last else "-",
                entry.get("next_run") or "-",
                f"{entry.get('runs', 0)}/{entry.get('failures', 0)}/{entry.get('skipped', 0)}",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    ]
    for name, entry in sorted(state.get("jobs", {}).items()):
        last = entry.get("last_run")
        if last:
            lines.append(f"{name}: {last['summary']}  (log: {last['log']})")
    return "\n".join(lines)
