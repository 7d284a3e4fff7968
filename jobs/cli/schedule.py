"""``bertsearch schedule`` and ``schedule-status``: run jobs on cron-style schedules."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bertsearch.jobs.cli.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedule", help="run indexing (and other) jobs on cron-style schedules")
    p.add_argument("--config", type=Path, required=True, help="schedule file (YAML or TOML)")
    p.add_argument("--check", action="store_true", help="validate the file, print each job's next run, exit")
    p.add_argument("--run-now", metavar="JOB", help="run one job once now (one run at a time still holds)")
    p.set_defaults(run=schedule)
    p = sub.add_parser("schedule-status", help="last run, duration and next run of each scheduled job")
    p.add_argument("--config", type=Path, required=True, help="schedule file (YAML or TOML)")
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.set_defaults(run=status)


def load(path: Path):
    """The schedule file, with every ``command`` job checked against this command line."""
    from bertsearch.jobs.cli import check_argv
    from bertsearch.jobs.schedule.config import load_schedule

    return load_schedule(path, check_argv=check_argv)


def schedule(args: argparse.Namespace) -> int:
    from bertsearch.jobs.schedule.runner import JobRunner, next_fire_times, run_scheduler

    config = load(args.config)
    if args.check:
        for name, when in next_fire_times(config).items():
            job = config.job(name)
            print(f"{name}: {job.when}, next {when or 'never (disabled)'}: bertsearch {' '.join(job.argv)}")
        print(f"ok: {len(config.jobs)} jobs; state in {config.state_file}, logs in {config.log_dir}")
        return 0
    if args.run_now:
        try:
            job = config.job(args.run_now)
        except KeyError as err:
            raise UserError(str(err.args[0])) from err
        record = JobRunner(config).run(job)
        print(f"{record.job}: {record.status} in {record.duration_s:.1f} s: {record.summary}")
        return 0 if record.status == "ok" else 1
    run_scheduler(config)
    return 0


def status(args: argparse.Namespace) -> int:
    from bertsearch.jobs.schedule.runner import format_status, job_status

    state = job_status(load(args.config))
    print(json.dumps(state, indent=2, sort_keys=True) if args.json else format_status(state))
    return 0
