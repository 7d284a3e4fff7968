"""The mined training groups of a run, kept in its work folder so that a resumed run trains on
the same data (mining is seeded, but the index may have changed since)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bertsearch.indexer import atomic
from bertsearch.ranker.training.examples import TrainingGroup

GROUPS_FILE = "groups.jsonl"
GROUPS_INFO = "groups.json"


def save_groups(work_dir: Path, groups: list[TrainingGroup], info: dict[str, Any]) -> None:
    """Write the mined groups (and what produced them) so a resumed run trains on the same data."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(work_dir / GROUPS_FILE) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for group in groups:
            out.write(json.dumps(group.to_dict(), ensure_ascii=False) + "\n")
    atomic.write_json(work_dir / GROUPS_INFO, info, sort_keys=True)


def load_groups(work_dir: Path, info: dict[str, Any]) -> list[TrainingGroup] | None:
    """The groups saved by an earlier run with the same ``info``; None when there are none.

    Raises ValueError when the folder holds groups made with other settings: resuming a run on
    different data would silently mix two trainings.
    """
    path, info_path = work_dir / GROUPS_FILE, work_dir / GROUPS_INFO
    if not path.is_file() or not info_path.is_file():
        return None
    saved = json.loads(info_path.read_text())
    if saved != json.loads(json.dumps(info, sort_keys=True)):
        changed = sorted(k for k in set(saved) | set(info) if saved.get(k) != info.get(k))
        raise ValueError(
            f"{work_dir} holds a run made with other data settings ({', '.join(changed)} differ); "
            "delete that folder or pass another --work-dir"
        )
    with open(path, encoding="utf-8") as handle:
        return [TrainingGroup.from_dict(json.loads(line)) for line in handle if line.strip()]


def settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
