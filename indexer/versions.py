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
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from bertsearch.indexer import atomic

log = logging.getLogger(__name__)

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
    # sha256 of the source files when the build read them (bertsearch.indexer.corpus.files_digest); None in
    # versions written before it was recorded, and after an incremental update changed the content.
    source_digest: str | None = None

    def corpus(self) -> dict[str, Any]:
        """The corpus this version was built from, as a model folder records what it was trained on."""
        return {"source": self.source, "digest": self.source_digest}

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise IndexNotFoundError(f"{str(folder)!r} has no {MANIFEST}: not a complete index version")
        return cls(**json.loads(path.read_text()))


# Frees what an old version holds outside its folder, given its manifest (LexicalBackend.release).
Release = Callable[[Manifest], None]


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

    def publish(self, name: str, staging: Path, *, keep: int = 3, release: Release | None = None) -> Path:
        """Make a finished build a version and the current one, then prune to ``keep`` versions
        (``release`` as in :meth:`prune`)."""
        final = self.versions_dir / name
        staging.rename(final)
        atomic.write_text(self.root / CURRENT, name + "\n")  # readers see the old name or the new one
        self.prune(keep, release=release)
        return final

    def prune(self, keep: int, *, release: Release | None = None) -> list[str]:
        """Remove all but the newest ``keep`` versions, never the current one; returns those removed.

        ``release`` is called with each old version's manifest before its folder goes, to free
        what the version holds outside it (its Elasticsearch index). A version whose release
        fails is kept, with a warning, so that the next prune tries again instead of losing
        track of it.
        """
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        current = self.current_name()
        removed = []
        for name in [v for v in self.versions()[:-keep] if v != current]:
            folder = self.versions_dir / name
            if release is not None:
                try:
                    release(Manifest.read(folder))
                except IndexNotFoundError:
                    pass  # an incomplete folder holds nothing outside itself
                except Exception as err:  # noqa: BLE001 - any backend failure: keep the version, retry later
                    log.warning("kept old index version %s: releasing it failed (%s)", name, err)
                    continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(name)
        return removed
