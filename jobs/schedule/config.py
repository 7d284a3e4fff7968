"""The schedule file of ``bertsearch schedule``: which jobs run when, checked before anything runs.

YAML (``.yaml``/``.yml``) or TOML (``.toml``)::

    timezone: UTC                      # of the cron expressions (default UTC)
    state_file: state/schedule.json    # last-run status of each job (default: beside this file)
    log_dir: state/logs                # one log file per run (default: beside the state file)
    jobs:
      - name: scifact-nightly
        cron: "0 3 * * *"              # minute hour day-of-month month day-of-week
        index:                         # a `bertsearch index` job, typed
          source: /data/scifact
          index_dir: /data/index
          embed_with: ray
      - name: updates
        every_seconds: 300             # instead of cron
        index: {source: /data/updates, index_dir: /data/index, incremental: true}
      - name: nightly-eval
        cron: "30 4 * * *"
        command: [eval, /data/scifact, --index-dir, /data/index, --out, /data/reports]  # any subcommand
        timeout_seconds: 7200
      - name: learn-from-clicks        # `bertsearch train --from-feedback`, typed
        cron: "0 1 * * *"
        train:
          from_feedback: /data/index/feedback.sqlite3
          feedback_days: 7             # the last week's sessions
          index_dir: /data/index
          out: /data/candidates/nightly
          args: [--epochs, "1", --workers, "2"]   # any other `train` flags
      - name: gate-and-promote         # `bertsearch reranker promote`, typed
        cron: "0 4 * * *"
        promote: {candidate: /data/candidates/nightly, registry: /data/rerankers,
                  dataset: /data/judged, index_dir: /data/index, split: dev, margin: 0.002}

A ``train`` job always starts afresh (``--fresh``): yesterday's checkpoints are not resumed on
today's data. A ``promote`` job whose candidate the gate refuses ends with status 1 (failed).

Every problem in the file is reported at once, each with where it is and what to change.
Relative paths are relative to the schedule file.
"""

from __future__ import annotations

import difflib
import tomllib
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertsearch.jobs.indexing.job import IndexJob

TOP_KEYS = ("timezone", "state_file", "log_dir", "jobs")
KINDS = ("index", "train", "promote", "command")
JOB_KEYS = ("name", "cron", "every_seconds", *KINDS, "timeout_seconds", "enabled")
INDEX_PATH_KEYS = ("source", "index_dir")
_TEXT, _INT, _FLAG = ((str,), "a string"), ((int,), "an integer"), ((bool,), "true or false")
_OPTIONAL_TEXT, _OPTIONAL_INT = ((str, type(None)), "a string"), ((int, type(None)), "an integer")
INDEX_TYPES = {
    "source": _TEXT,
    "index_dir": _TEXT,
    "incremental": _FLAG,
    "all_files": _FLAG,
    "model": _OPTIONAL_TEXT,
    "dense_index": _TEXT,
    "max_length": _OPTIONAL_INT,
    "batch_size": _INT,
    "keep": _INT,
    "embed_with": _TEXT,
    "ray_workers": _INT,
    "ray_address": _OPTIONAL_TEXT,
}
INDEX_KEYS = tuple(INDEX_TYPES)  # the lexical backend comes from the environment, as for the CLI
CRON_HINT = "five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *' (03:00 daily)"


# Why the command line would reject a job's arguments, or None when it accepts them.
ArgvCheck = Callable[[Sequence[str]], str | None]


class ScheduleConfigError(ValueError):
    """The schedule file is unusable; ``problems`` lists every reason, each saying what to change."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the schedule file:\n{listing}")


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: ``argv`` is the ``bertsearch`` command line it runs."""

    name: str
    argv: tuple[str, ...]
    cron: str | None = None
    every_seconds: float | None = None
    timeout_seconds: float | None = None
    enabled: bool = True

    @property
    def when(self) -> str:
        return f"cron '{self.cron}'" if self.cron else f"every {self.every_seconds:g} s"


@dataclass(frozen=True)
class ScheduleConfig:
    path: Path
    timezone: str
    state_file: Path
    log_dir: Path
    jobs: tuple[JobSpec, ...]

    def job(self, name: str) -> JobSpec:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(f"no job named {name!r} in {self.path}; jobs: {[j.name for j in self.jobs]}")


def load_schedule(path: str | Path, *, check_argv: ArgvCheck | None = None) -> ScheduleConfig:
    """Read and check a schedule file; raise ScheduleConfigError listing every problem.

    ``check_argv`` says why the command line would reject a ``command`` job's arguments (None:
    accepted); the command line passes its own parser's check (``jobs.cli.check_argv``). Without
    one, command jobs are checked for shape only.
    """
    path = Path(path)
    raw = _read(path)
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ScheduleConfigError(path, ["the file must hold a mapping with a 'jobs' list"])
    _unknown_keys(raw, TOP_KEYS, "top level", problems)
    timezone = raw.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(str(timezone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"timezone: {timezone!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Paris')")
        timezone = "UTC"
    base = path.resolve().parent
    state_file = _path(raw.get("state_file", "schedule-state.json"), base)
    log_dir = _path(raw["log_dir"], base) if "log_dir" in raw else state_file.parent / "schedule-logs"

    jobs_raw = raw.get("jobs")
    jobs: list[JobSpec] = []
    if not isinstance(jobs_raw, list) or not jobs_raw:
        problems.append(
            "jobs: give a non-empty list of jobs "
            "(each with a name, cron or every_seconds, and index or command)"
        )
        jobs_raw = []
    seen: set[str] = set()
    for number, entry in enumerate(jobs_raw):
        job = _job(entry, f"jobs[{number}]", base, str(timezone), problems, check_argv)
        if job is None:
            continue
        if job.name in seen:
            problems.append(f"jobs[{number}].name: {job.name!r} is used twice; job names must be unique")
        seen.add(job.name)
        jobs.append(job)
    if problems:
        raise ScheduleConfigError(path, problems)
    return ScheduleConfig(path.resolve(), str(timezone), state_file, log_dir, tuple(jobs))


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ScheduleConfigError(path, ["the schedule file does not exist"])
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ScheduleConfigError(path, [f"not valid TOML: {err}"]) from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ScheduleConfigError(path, [f"not valid YAML: {err}"]) from None
    raise ScheduleConfigError(
        path, [f"unknown format {path.suffix!r}: name the file *.yaml, *.yml or *.toml"]
    )


def _path(value: Any, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _unknown_keys(mapping: dict, known: tuple[str, ...], where: str, problems: list[str]) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            problems.append(f"{where}: unknown key {key!r}{hint}")


def _job(
    entry: Any, where: str, base: Path, timezone: str, problems: list[str], check_argv: ArgvCheck | None
) -> JobSpec | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: a job is a mapping with name, cron/every_seconds and index/command")
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or not all(c.isalnum() or c in "-_." for c in name):
        problems.append(f"{where}.name: give a name of letters, digits, '-', '_' or '.' (got {name!r})")
        name = None
    else:
        where = f"{where} ({name})"
    _unknown_keys(entry, JOB_KEYS, where, problems)
    before = len(problems)

    cron, every = entry.get("cron"), entry.get("every_seconds")
    if (cron is None) == (every is None):
        problems.append(f"{where}: give exactly one of 'cron' ({CRON_HINT}) or 'every_seconds'")
    elif cron is not None:
        _check_cron(cron, where, timezone, problems)
    elif isinstance(every, bool) or not isinstance(every, int | float) or every <= 0:
        problems.append(f"{where}.every_seconds: must be a positive number of seconds, got {every!r}")

    timeout = entry.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        problems.append(f"{where}.timeout_seconds: must be a positive number of seconds, got {timeout!r}")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}.enabled: must be true or false, got {enabled!r}")

    kinds = [kind for kind in KINDS if entry.get(kind) is not None]
    argv: tuple[str, ...] = ()
    if len(kinds) != 1:
        problems.append(
            f"{where}: give exactly one of 'index' (an indexing job), 'train', 'promote' or 'command' "
            "(bertsearch arguments)"
        )
    elif kinds[0] == "index":
        argv = _index_argv(entry["index"], f"{where}.index", base, problems)
    elif kinds[0] == "command":
        argv = _command_argv(entry["command"], f"{where}.command", problems, check_argv)
    else:
        argv = _typed_argv(kinds[0], entry[kinds[0]], f"{where}.{kinds[0]}", base, problems, check_argv)
    if name is None or len(problems) > before:
        return None
    return JobSpec(
        name=name,
        argv=argv,
        cron=cron,
        every_seconds=float(every) if every is not None else None,
        timeout_seconds=float(timeout) if timeout is not None else None,
        enabled=enabled,
    )


def _check_cron(cron: Any, where: str, timezone: str, problems: list[str]) -> None:
    from apscheduler.triggers.cron import CronTrigger

    if not isinstance(cron, str):
        problems.append(f"{where}.cron: must be a string ({CRON_HINT}), got {cron!r}")
        return
    try:
        CronTrigger.from_crontab(cron, timezone=zoneinfo.ZoneInfo(timezone))
    except ValueError as err:
        problems.append(f"{where}.cron: {cron!r} is not a valid cron expression ({err}); {CRON_HINT}")


def _index_argv(spec: Any, where: str, base: Path, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be a mapping of `bertsearch index` settings (source, index_dir, ...)")
        return ()
    _unknown_keys(spec, INDEX_KEYS, where, problems)
    missing = [key for key in INDEX_PATH_KEYS if not spec.get(key)]
    if missing:
        problems.append(
            f"{where}: missing {' and '.join(missing)} (the corpus to read and the index directory)"
        )
        return ()
    settings = {k: v for k, v in spec.items() if k in INDEX_KEYS}
    wrong = [
        f"{where}.{key}: must be {INDEX_TYPES[key][1]}, got {value!r}"
        for key, value in settings.items()
        if not _is(value, INDEX_TYPES[key][0])
    ]
    if wrong:
        problems.extend(wrong)
        return ()
    for key in INDEX_PATH_KEYS:
        settings[key] = _path(settings[key], base)
    try:
        job = IndexJob(**settings)
    except ValueError as err:
        problems.append(f"{where}: {err}")
        return ()
    argv = ["index", str(job.source), "--index-dir", str(job.index_dir), "--no-progress"]
    argv += ["--embed-with", job.embed_with, "--keep", str(job.keep), "--batch-size", str(job.batch_size)]
    argv += ["--dense-index", job.dense_index]
    if job.incremental:
        argv.append("--incremental")
    if job.all_files:
        argv.append("--all-files")
    for flag, value in (
        ("--model", job.model),
        ("--max-length", job.max_length),
        ("--ray-workers", job.ray_workers or None),
        ("--ray-address", job.ray_address),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return tuple(argv)


@dataclass(frozen=True)
class TypedKind:
    """A typed job kind: each key of its mapping becomes the subcommand's flag of that name
    (``positional`` its positional argument; ``paths`` resolved against the schedule file),
    ``args`` adds any other flags, and the command line checks the result like a command job.
    ``one_of``: keys of which exactly one must be set (two ways to do one thing)."""

    command: tuple[str, ...]
    positional: str
    required: tuple[str, ...]
    keys: tuple[str, ...]
    paths: tuple[str, ...]
    fixed: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()


TYPED = {
    "train": TypedKind(
        command=("train",), positional="dataset", required=("from_feedback", "index_dir", "out"),
        keys=("from_feedback", "feedback_days", "index_dir", "out", "dataset", "dev_split", "base_model",
              "min_clicks", "min_click_rate", "click_confidence", "examined_by", "args"),
        paths=("from_feedback", "index_dir", "out", "dataset", "base_model"),
        fixed=("--fresh",),
    ),
    "promote": TypedKind(
        command=("reranker", "promote"), positional="candidate",
        required=("candidate", "registry", "index_dir"),
        one_of=("dataset", "feedback"),  # gate on a judged split, or on held-out logged sessions
        keys=("candidate", "registry", "dataset", "feedback", "feedback_days", "min_clicks",
              "click_confidence", "examined_by", "index_dir", "split", "metric", "margin", "max_p", "args"),
        paths=("candidate", "registry", "dataset", "feedback", "index_dir"),
    ),
}  # fmt: skip


def _typed_argv(kind: str, spec: Any, where: str, base: Path, problems: list[str],
                check_argv: ArgvCheck | None) -> tuple[str, ...]:  # fmt: skip
    rules = TYPED[kind]
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be a mapping of `bertsearch {' '.join(rules.command)}` settings "
                        f"({', '.join(rules.required)}, ...)")  # fmt: skip
        return ()
    _unknown_keys(spec, rules.keys, where, problems)
    missing = [key for key in rules.required if not spec.get(key)]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return ()
    if rules.one_of and sum(bool(spec.get(key)) for key in rules.one_of) != 1:
        problems.append(f"{where}: give exactly one of {', '.join(rules.one_of)}")
        return ()
    extra = spec.get("args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str | int | float) for a in extra):
        problems.append(f"{where}.args: must be a list of further flags, e.g. [--epochs, '2']")
        return ()
    values = {key: str(_path(v, base)) if key in rules.paths else str(v)
              for key, v in spec.items() if key in rules.keys and key != "args"}  # fmt: skip
    positional = values.pop(rules.positional, None)
    argv = [*rules.command, *([positional] if positional else [])]
    argv += [a for key, value in values.items() for a in ("--" + key.replace("_", "-"), value)]
    argv += [*rules.fixed, *(str(a) for a in extra)]
    return _command_argv(argv, where, problems, check_argv)


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    return value is None and type(None) in kinds or isinstance(value, kinds)


def _command_argv(
    command: Any, where: str, problems: list[str], check_argv: ArgvCheck | None
) -> tuple[str, ...]:
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str | int | float) for a in command)
    ):
        problems.append(
            f"{where}: must be a non-empty list of bertsearch arguments, "
            "e.g. [eval, DATASET, --index-dir, DIR, --out, REPORT_DIR]"
        )
        return ()
    argv = tuple(str(a) for a in command)
    if argv[0] in ("schedule", "schedule-status"):
        problems.append(f"{where}: a scheduled job cannot run `bertsearch {argv[0]}`")
        return ()
    reason = check_argv(argv) if check_argv is not None else None
    if reason is not None:
        problems.append(f"{where}: bertsearch rejects {list(argv)}: {reason}")
        return ()
    return argv
