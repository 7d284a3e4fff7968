"""Scheduled jobs: the schedule file (checked whole) and the runner (cron or interval triggers, one
run at a time per job, state and logs on disk)."""
