"""Service settings, read from BERTSEARCH_* environment variables when the app is created."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs.

    ``api_key``: the key ``PUT``/``DELETE /documents`` require in ``X-API-Key``; without one, writes
    are refused. ``reload_seconds``: how often CURRENT is checked for a new index version (0: never).
    ``keep_versions``: versions kept when a write publishes one. ``write_lock_seconds``: how long a
    write waits for another writer (a scheduled build) before answering 409.
    """

    index_dir: Path
    reranker: str | None = None
    encoder_model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    reload_seconds: float = 2.0
    keep_versions: int = 3
    write_lock_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.reload_seconds < 0:
            raise ValueError(
                f"BERTSEARCH_RELOAD_SECONDS must be 0 (off) or positive, got {self.reload_seconds}"
            )
        if self.keep_versions < 1:
            raise ValueError(f"BERTSEARCH_KEEP_VERSIONS must be at least 1, got {self.keep_versions}")
        if self.write_lock_seconds < 0:
            raise ValueError(
                f"BERTSEARCH_WRITE_LOCK_SECONDS must be non-negative, got {self.write_lock_seconds}"
            )
        if self.api_key is not None and len(self.api_key) < 16:
            raise ValueError(
                "BERTSEARCH_API_KEY must be at least 16 characters (e.g. `openssl rand -hex 32`)"
            )

    @classmethod
    def from_env(cls) -> ServiceSettings:
        index_dir = os.environ.get("BERTSEARCH_INDEX_DIR")
        if not index_dir:
            raise ValueError("set BERTSEARCH_INDEX_DIR to the index directory to serve")
        return cls(
            index_dir=Path(index_dir),
            reranker=os.environ.get("BERTSEARCH_RERANKER") or None,
            encoder_model=os.environ.get("BERTSEARCH_MODEL") or None,
            api_key=os.environ.get("BERTSEARCH_API_KEY") or None,
            reload_seconds=_number("BERTSEARCH_RELOAD_SECONDS", 2.0),
            keep_versions=int(_number("BERTSEARCH_KEEP_VERSIONS", 3)),
            write_lock_seconds=_number("BERTSEARCH_WRITE_LOCK_SECONDS", 10.0),
        )

    def to_env(self) -> dict[str, str]:
        env = {"BERTSEARCH_INDEX_DIR": str(self.index_dir)}
        if self.reranker:
            env["BERTSEARCH_RERANKER"] = self.reranker
        if self.encoder_model:
            env["BERTSEARCH_MODEL"] = self.encoder_model
        if self.api_key:
            env["BERTSEARCH_API_KEY"] = self.api_key
        # Defaults are left out, so they do not override values already set in the environment.
        for name, value, default in (
            ("BERTSEARCH_RELOAD_SECONDS", self.reload_seconds, 2.0),
            ("BERTSEARCH_KEEP_VERSIONS", self.keep_versions, 3),
            ("BERTSEARCH_WRITE_LOCK_SECONDS", self.write_lock_seconds, 10.0),
        ):
            if value != default:
                env[name] = str(value)
        return env


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
