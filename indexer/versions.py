"""An index directory: immutable versions, a manifest each, and an atomic CURRENT pointer.

```
DIR/CURRENT                       name of the version being served (replaced atomically)
DIR/versions/<name>/manifest.json what was built, from what, with which model
DIR/versions/<name>/lexical/      tantivy index
DIR/versions/<name>/dense/        FAISS index + ids
DIR/versions/<name>/rejects.jsonl lines of the source that were not indexed, and why
```

A build writes into ``versions/.building-<name>`` and renames it when complete, so a crashed
build never leaves a half-written version behind a name, and CURRENT never points at one.
Writers (full builds, incremental updates) hold ``DIR/.lock`` (an advisory ``flock``, freed by
the kernel when its process dies) so two of them never interleave; readers take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

CURRENT = "CURRENT"
VERSIONS = "versions"
BUILDING_PREFIX = ".building-"
MANIFEST = "manifest.json"
LOCK = ".lock"


class IndexNotFoundError(FileNotFoundError):
    """The index directory holds no usable version."""


class IndexBusyError(RuntimeError):
    """Another process is building or updating this index directory."""


@dataclass(frozen=True)
class Manifest:
    """What a version holds and how it was made; written once, next to the data."""

    version: str
    created_at: str
    tool_version: str
    source: str
    source_watermark: float
    documents: int
    rejects: int
    build_seconds: float
    embedding: dict[str, Any] = field(default_factory=dict)
    dense: dict[str, Any] = field(default_factory=dict)
    lexical: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None  # the version an incremental update started from; None for a full build
    updates: dict[str, Any] = field(default_factory=dict)  # what an incremental update changed
    # sha256 of the source files when the build read them (indexer.corpus.files_digest); None in
    # versions written before it was recorded, and after an incremental update changed the content.
    source_digest: str | None = None

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise IndexNotFoundError(f"{str(folder)!r} has no {MANIFEST}: not a complete index version")
        return cls(**json.loads(path.read_text()))


def new_version_name() -> str:
    """A name that sorts after every earlier one (microseconds: builds can finish within a second)."""
    return datetime.now(UTC).strftime("v%Y%m%dT%H%M%S%f") + "-" + uuid4().hex[:6]


class IndexDirectory:
    """The versions of one index and which of them is current."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS

    def current_name(self) -> str | None:
        pointer = self.root / CURRENT
        return pointer.read_text().strip() if pointer.is_file() else None

    def current(self) -> Path:
        """The folder of the current version; raises IndexNotFoundError when there is none."""
        name = self.current_name()
        if name is None:
            raise IndexNotFoundError(
                f"no index in {str(self.root)!r}: "
                f"build one with `bertsearch index SOURCE --index-dir {self.root}`"
            )
        folder = self.versions_dir / name
        if not folder.is_dir():
            raise IndexNotFoundError(f"{str(self.root)!r}: CURRENT names {name!r}, which does not exist")
        return folder

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    @contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the writer lock; wait up to ``timeout`` seconds (None: forever) or raise IndexBusyError."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a+") as handle:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise IndexBusyError(
                            f"{str(self.root)!r} is being built or updated by another process; retry later"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start_build(self) -> tuple[str, Path]:
        """A fresh staging folder for a new version; clears staging left by crashed builds.

        Call it holding ``lock()``: otherwise it may clear another live build's staging.
        """
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.versions_dir.glob(BUILDING_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        name = new_version_name()
        staging = self.versions_dir / (BUILDING_PREFIX + name)
        staging.mkdir()
        return name, staging

    def publish(self, name: str, staging: Path, *, keep: int = 3) -> Path:
        """Make a finished build a version and the current one, then prune to ``keep`` versions."""
        final = self.versions_dir / name
        staging.rename(final)
        tmp = self.root / (CURRENT + ".tmp")
        tmp.write_text(name + "\n")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.root / CURRENT)  # atomic: readers see the old name or the new one
        self.prune(keep)
        return final

    def prune(self, keep: int) -> list[str]:
        """Remove all but the newest ``keep`` versions, never the current one."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        current = self.current_name()
        old = [v for v in self.versions()[:-keep] if v != current]
        for name in old:
            shutil.rmtree(self.versions_dir / name, ignore_errors=True)
        return old
