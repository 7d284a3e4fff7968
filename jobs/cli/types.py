"""Argument types and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime


def positive_ints(name: str, example: str):
    """An argparse type for a comma-separated list of positive integers (sorted, without repeats)."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                f"give {name} as comma-separated integers, e.g. {example}; got {text!r}"
            ) from err
        if not values or values[0] < 1:
            raise argparse.ArgumentTypeError(f"{name} must be positive integers, got {text!r}")
        return values

    return parse


def one_sided_confidence(text: str) -> float:
    """An argparse type for a one-sided confidence level: a number in [0.5, 1)."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"give a confidence such as 0.95, got {text!r}") from err
    if not 0.5 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a confidence is in [0.5, 1), e.g. 0.95; got {text!r}")
    return value


class DeprecatedAlias(argparse.Action):
    """An old spelling of a renamed flag: still accepted, with a warning naming the new one."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is now {self.new}; the old name will go", file=sys.stderr)
        if self.type is None and self.nargs == 0:
            values = self.const
        setattr(namespace, self.dest, values)


def command_line() -> str:
    """The command as typed, for reports."""
    return " ".join(["bertsearch", *sys.argv[1:]])


def utc_time(text: str) -> datetime:
    """An argparse type for a time in ISO 8601; one without a zone is read as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"give a time as ISO 8601, e.g. 2026-12-01T00:00:00Z; got {text!r}"
        ) from err
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
