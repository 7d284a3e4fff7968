"""A reranker registry: immutable reranker versions and the one that is served.

```
REGISTRY/CURRENT                       name of the served version (replaced atomically; absent: hybrid)
REGISTRY/versions/<name>/              a model folder (weights + metadata.json), never changed again
REGISTRY/versions/<name>/version.json  base model, training data, metrics, parent (written once)
REGISTRY/versions/<name>/gate.json     the promotion gate's decision, once it has been gated
REGISTRY/history.jsonl                 every promotion and rollback, in order
```

The layout and its mechanics are an index directory's (``indexer.versions.IndexDirectory``):
a version is staged in ``versions/.building-<name>`` and renamed when complete, writers hold
``.lock``, readers take none. The service serves CURRENT and takes up a new one without a
restart (``api.serving``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bertsearch.indexer import atomic
from bertsearch.indexer.versions import IndexDirectory
from bertsearch.ranker.model_dir import METADATA_FILE, ModelRecord

VERSION_FILE = "version.json"
GATE_FILE = "gate.json"
HISTORY_FILE = "history.jsonl"


class RegistryError(ValueError):
    """A registry operation that cannot be done (an unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class RerankerVersion:
    name: str
    path: Path
    manifest: dict[str, Any]
    gate: dict[str, Any] | None

    @property
    def accepted(self) -> bool | None:
        return None if self.gate is None else bool(self.gate.get("accepted"))


class RerankerRegistry:
    """The reranker versions under ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._dir = IndexDirectory(self.root)

    @staticmethod
    def holds(path: str | Path) -> bool:
        """Whether ``path`` is a registry: a folder that is not a model folder (an empty one is an
        empty registry, which serves no reranker until a version is promoted)."""
        path = Path(path)
        is_model = (path / METADATA_FILE).is_file() or (path / "config.json").is_file()
        return path.is_dir() and not is_model

    def current_name(self) -> str | None:
        return self._dir.current_name()

    def current(self) -> Path | None:
        """The served version's model folder, or None when the registry serves none (hybrid)."""
        name = self.current_name()
        return None if name is None else self.get(name).path

    def get(self, name: str) -> RerankerVersion:
        folder = self._dir.versions_dir / name
        if not (folder / VERSION_FILE).is_file():
            known = ", ".join(self._dir.versions()) or "none"
            raise RegistryError(f"{self.root}: no reranker version {name!r} (versions: {known})")
        gate = folder / GATE_FILE
        return RerankerVersion(
            name, folder, json.loads((folder / VERSION_FILE).read_text()),
            json.loads(gate.read_text()) if gate.is_file() else None,
        )  # fmt: skip

    def versions(self) -> list[RerankerVersion]:
        """Every complete version, oldest first."""
        names = self._dir.versions()
        return [self.get(n) for n in names if (self._dir.versions_dir / n / VERSION_FILE).is_file()]

    def add(self, model_dir: str | Path, *, note: str | None = None) -> RerankerVersion:
        """Copy a trained model folder in as a new version (not served until promoted)."""
        model_dir = Path(model_dir)
        record = ModelRecord.require(model_dir)
        with self._dir.lock():
            name, staging = self._dir.start_build()
            shutil.rmtree(staging)
            shutil.copytree(model_dir, staging)
            provenance = dict(record.provenance)
            manifest = {
                "name": name,
                "created_at": _now(),
                "source": str(model_dir.resolve()),
                "parent": self.current_name(),  # what was served when this version was made
                "base_model": record.base_model,
                "max_length": record.max_length,
                "rerank_weight": record.rerank_weight,
                "rerank_top_n": record.rerank_top_n,
                "training_data": provenance.get("data"),
                "metrics": {"epochs": provenance.get("epochs"), "best_epoch": provenance.get("best_epoch"),
                            "tuning": record.rerank_weight_tuning},
                "note": note,
            }
            atomic.write_json(staging / VERSION_FILE, manifest)
            staging.rename(self._dir.versions_dir / name)
        return self.get(name)

    def record_gate(self, name: str, report: dict[str, Any]) -> None:
        """Write the gate's decision into the version (once per gating; the latest wins)."""
        atomic.write_json(self.get(name).path / GATE_FILE, report)

    def promote(self, name: str, *, forced: bool = False, reason: str | None = None) -> None:
        """Serve version ``name``: CURRENT is switched in one rename, the move recorded in history."""
        version = self.get(name)
        if not forced and not version.accepted:
            raise RegistryError(f"version {name} has not passed the promotion gate; gate it or use --force")
        with self._dir.lock():
            previous = self.current_name()
            atomic.write_text(self.root / "CURRENT", name + "\n")
            self._append({"action": "promote", "version": name, "previous": previous, "forced": forced,
                          "reason": reason})  # fmt: skip

    def rollback(self) -> str | None:
        """Serve what was served before the current version's promotion; returns its name (None: hybrid)."""
        with self._dir.lock():
            current = self.current_name()
            if current is None:
                raise RegistryError(f"{self.root} serves no reranker version: nothing to roll back")
            moves = [m for m in self.history() if m["action"] == "promote" and m["version"] == current]
            if not moves:
                raise RegistryError(f"{self.root}: no record of how {current} came to be served")
            target = moves[-1]["previous"]
            if target is None:
                (self.root / "CURRENT").unlink()
            else:
                atomic.write_text(self.root / "CURRENT", target + "\n")
            self._append({"action": "rollback", "version": target, "previous": current, "forced": False,
                          "reason": None})  # fmt: skip
        return target

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _append(self, move: dict[str, Any]) -> None:
        with open(self.root / HISTORY_FILE, "a", encoding="utf-8") as out:
            out.write(json.dumps({"at": _now(), **move}) + "\n")


def resolve_reranker(configured: str | Path | None) -> tuple[str | None, str | None]:
    """(model folder, registry version) of a configured reranker: a registry's CURRENT version,
    or the folder (or Hugging Face id) itself; (None, None) for none, or an empty registry."""
    if configured is None or not RerankerRegistry.holds(configured):
        return (str(configured) if configured is not None else None), None
    registry = RerankerRegistry(configured)
    name = registry.current_name()
    return (str(registry.get(name).path), name) if name is not None else (None, None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
