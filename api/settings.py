"""Service settings, read from BERTSEARCH_* environment variables when the app is created."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceSettings:
    index_dir: Path
    reranker: str | None = None
    encoder_model: str | None = None

    @classmethod
    def from_env(cls) -> ServiceSettings:
        index_dir = os.environ.get("BERTSEARCH_INDEX_DIR")
        if not index_dir:
            raise ValueError("set BERTSEARCH_INDEX_DIR to the index directory to serve")
        return cls(
            index_dir=Path(index_dir),
            reranker=os.environ.get("BERTSEARCH_RERANKER") or None,
            encoder_model=os.environ.get("BERTSEARCH_MODEL") or None,
        )

    def to_env(self) -> dict[str, str]:
        env = {"BERTSEARCH_INDEX_DIR": str(self.index_dir)}
        if self.reranker:
            env["BERTSEARCH_RERANKER"] = self.reranker
        if self.encoder_model:
            env["BERTSEARCH_MODEL"] = self.encoder_model
        return env
