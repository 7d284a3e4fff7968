"""Atomic writes: a reader (or a rerun after a crash) sees the old file or the new one, never half.

Every file bertsearch replaces in place (``CURRENT``, manifests of runs, model metadata, the
scheduler's state, embedding checkpoints) is written through this module: to a temporary file in
the same folder, flushed to disk, then renamed over the target, which POSIX makes atomic.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (``np.save`` and friends append theirs otherwise)
    and carries the process id, so concurrent writers never share one. On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> None:
    """Replace ``path`` with ``data`` as indented JSON atomically (paths and dates as strings)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, default=str) + "\n")


def replace_directory(staging: str | Path, target: str | Path) -> None:
    """Put the finished folder ``staging`` in place of ``target`` (which may not exist).

    The old folder is moved aside before the new one is renamed in, so ``target`` is at every
    moment either the complete old folder or the complete new one (or, between the two renames,
    briefly absent); the old one is deleted last. The new folder's files, and the renames, are
    flushed to disk first, so a machine loss cannot leave a complete name over partial files.
    """
    staging, target = Path(staging), Path(target)
    for path in [*staging.rglob("*"), staging]:
        _fsync(path)
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    staging.rename(target)
    _fsync(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's (its entries') changes to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
