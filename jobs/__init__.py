"""Batch work and the command line, one subpackage per concern.

``cli`` (every argparse definition; user errors become exit status 2), ``schedule`` (the schedule
file and its runner), ``training`` (Ray Train orchestration), ``evaluation`` (offline relevance
evaluation and operating-point tuning), ``indexing`` (index jobs, Ray Data embedding),
``datasets`` (BEIR folders, splits, the sample corpus) and ``runtime`` (the one way to start or
join Ray; the one machine description). Each imports only those after it in this list; the
order is an import-linter contract in pyproject.toml.
"""
