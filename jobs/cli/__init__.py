"""The ``bertsearch`` command line.

Every argparse definition of bertsearch lives in this package, one module per concern; each
subcommand turns its arguments into a typed config, calls the job, and prints. :func:`main` is the
one place where a user's mistake (:data:`~bertsearch.jobs.cli.errors.USER_ERRORS`) becomes a
one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
from collections.abc import Sequence

from bertsearch.jobs.cli import (
    datasets,
    evaluation,
    feedback,
    indexing,
    loco,
    pretrain,
    reranker,
    schedule,
    serving,
    training,
)
from bertsearch.jobs.cli.errors import USER_ERRORS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertsearch",
        description="Search that understands queries: index, search, serve, evaluate, train, schedule.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (
        indexing,
        serving,
        evaluation,
        datasets,
        training,
        loco,
        pretrain,
        reranker,
        schedule,
        feedback,
    ):
        module.register(sub)
    return parser


def check_argv(argv: Sequence[str]) -> str | None:
    """Why ``bertsearch`` would reject ``argv`` (argparse's own last line), or None when it parses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(list(argv))
    except SystemExit:
        message = stderr.getvalue().strip().splitlines()
        return message[-1] if message else "invalid arguments"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args) or 0
    except USER_ERRORS as err:
        print(f"bertsearch {args.command}: error: {err}", file=sys.stderr)
        return 2
