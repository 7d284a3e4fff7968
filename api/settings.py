"""Service settings: each read from one ``BERTSEARCH_*`` environment variable, named once here.

pydantic-settings reads the environment when the app is created (never at import); values given
to the constructor win over the environment, and an empty variable counts as unset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BERTSEARCH_"


class ServiceSettings(BaseSettings):
    """How the service runs.

    ``index_dir`` (``BERTSEARCH_INDEX_DIR``): the index directory to serve. ``reranker``
    (``BERTSEARCH_RERANKER``): a trained cross-encoder folder, or a reranker registry (its CURRENT
    version is served, and followed without a restart). ``encoder_model``
    (``BERTSEARCH_MODEL``): the query encoder (default: the one the index names). ``api_key``
    (``BERTSEARCH_API_KEY``): the key ``PUT``/``DELETE /documents`` require in ``X-API-Key``;
    without one, writes are refused. ``reload_seconds``: how often CURRENT is checked for a new
    index version (0: never). ``keep_versions``: versions kept when a write publishes one.
    ``write_lock_seconds``: how long a write waits for another writer (a scheduled build) before
    answering 409.

    Reranking: ``rerank_budget_ms`` is the time the rerank stage of an answer may take unless the
    request asks for another (0: no limit). The scoring worker batches up to
    ``rerank_batch_pairs`` pairs, waiting at most ``rerank_batch_wait_ms`` for a batch to fill,
    and answers 503 (Retry-After) when more than ``rerank_max_queue_ms`` of scoring is queued.
    ``rerank_cache_entries``: reranker scores of (query, document) pairs kept for repeated
    queries, per index and reranker version (0: no cache). ``max_concurrent_searches``: searches
    answered at once; one more is refused with 503 (Retry-After) instead of slowing all of them
    down once retrieval itself saturates the CPUs (0: no limit).

    Limits of a request without the API key (with it, the schema's): ``max_candidates`` for
    ``lexical_k``/``dense_k``, ``max_rerank_top_n``, ``max_rerank_budget_ms``.

    Feedback: every answer is logged under its ``query_id`` in ``feedback_log`` (``sqlite``: the
    file ``feedback_db``, default ``INDEX_DIR/feedback.sqlite3``; ``elasticsearch``: the
    ``ubi_queries``/``ubi_events`` indices at ``BERTSEARCH_ES_URL``, shared by replicas; ``off``);
    records older than ``feedback_retention_days`` are dropped when the service starts (0: kept).
    ``explore_rate``: the probability that a shown position holds a document drawn from the served
    order's positions ``top_k + 1`` to ``explore_depth`` (ε-greedy exploration, so that clicks can
    reach what the ranker puts below the page; ``api/exploration.py``; 0: off, the default).

    The web console at ``/`` lists the evaluation reports under ``reports_dir``
    (``BERTSEARCH_REPORTS_DIR``; none: no reports page).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    index_dir: Path
    reranker: str | None = None
    encoder_model: str | None = Field(
        default=None, validation_alias=AliasChoices("encoder_model", f"{ENV_PREFIX}MODEL")
    )
    api_key: str | None = Field(default=None, repr=False)
    reload_seconds: float = Field(default=2.0, ge=0)
    keep_versions: int = Field(default=3, ge=1)
    write_lock_seconds: float = Field(default=10.0, ge=0)
    rerank_budget_ms: float = Field(default=400.0, ge=0)
    rerank_batch_pairs: int = Field(default=64, ge=1, le=4096)
    rerank_batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    rerank_max_queue_ms: float = Field(default=2000.0, ge=0)
    rerank_cache_entries: int = Field(default=50_000, ge=0)
    max_concurrent_searches: int = Field(default=0, ge=0)
    max_candidates: int = Field(default=200, ge=1, le=1000)
    max_rerank_top_n: int = Field(default=100, ge=1, le=1000)
    max_rerank_budget_ms: float = Field(default=2000.0, gt=0)
    feedback_log: Literal["sqlite", "elasticsearch", "off"] = "sqlite"
    feedback_db: Path | None = None
    feedback_retention_days: float = Field(default=90.0, ge=0)
    explore_rate: float = Field(default=0.0, ge=0, le=1)
    explore_depth: int = Field(default=50, ge=2, le=1000)
    reports_dir: Path | None = None

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError(
                f"{ENV_PREFIX}API_KEY must be at least 16 characters (e.g. `openssl rand -hex 32`)"
            )
        return value

    @property
    def feedback_path(self) -> Path:
        return self.feedback_db if self.feedback_db is not None else self.index_dir / "feedback.sqlite3"

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """The settings of this process's environment; ValueError saying which variable to fix."""
        try:
            return cls()
        except ValidationError as err:
            problems = []
            for error in err.errors():
                name = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}" if error["loc"] else "settings"
                if error["type"] == "missing" and name == f"{ENV_PREFIX}INDEX_DIR":
                    problems.append(f"set {name} to the index directory to serve")
                else:
                    message = error["msg"].removeprefix("Value error, ")
                    problems.append(message if message.startswith(name) else f"{name}: {message}")
            raise ValueError("; ".join(problems)) from None

    def to_env(self) -> dict[str, str]:
        """The variables that recreate these settings in another process (defaults left out, so
        they do not override values already set in the environment)."""
        names = {"encoder_model": f"{ENV_PREFIX}MODEL"}
        env = {}
        for field, info in type(self).model_fields.items():
            value = getattr(self, field)
            if value is not None and (field == "index_dir" or value != info.default):
                env[names.get(field, f"{ENV_PREFIX}{field.upper()}")] = str(value)
        return env
