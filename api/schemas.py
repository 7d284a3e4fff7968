"""Request and response bodies of the query service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_QUERY_CHARS = 1000
MAX_TOP_K = 100


class StageSettings(BaseModel):
    """Per-request overrides of the pipeline configuration; omitted fields keep the served value."""

    model_config = ConfigDict(extra="forbid")

    lexical: bool | None = Field(None, description="BM25 retrieval on or off")
    dense: bool | None = Field(None, description="dense (FAISS) retrieval on or off")
    rerank: bool | None = Field(None, description="cross-encoder rerank on or off")
    lexical_k: int | None = Field(None, ge=1, le=1000, description="BM25 candidates")
    dense_k: int | None = Field(None, ge=1, le=1000, description="dense candidates")
    rrf_k: int | None = Field(None, ge=0, le=1000, description="reciprocal rank fusion constant")
    rerank_top_n: int | None = Field(None, ge=1, le=1000, description="fused candidates to rerank")
    rerank_weight: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="weight of the reranker's score against the fused score (1: reranker alone; "
        "default: the weight the served model was tuned with)",
    )
    rerank_budget_ms: float | None = Field(
        None,
        gt=0,
        le=60_000,
        description="time the rerank stage may take; candidates left unscored keep their fused order "
        "(default: the service's budget)",
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="free text; no syntax")
    top_k: int = Field(10, ge=1, le=MAX_TOP_K, description="number of hits to return")
    stages: StageSettings | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query must contain some non-space text")
        return query


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the query, as sent to /search")
    id: str = Field(min_length=1, max_length=512, description="the document to explain")
    stages: StageSettings | None = Field(None, description="the same stage settings as the /search request")
    steps: int = Field(16, ge=2, le=64, description="integrated-gradients steps: the attribution's cost cap")

    _not_blank = field_validator("query")(SearchRequest._not_blank.__func__)


class HitOut(BaseModel):
    id: str
    title: str
    snippet: str
    score: float = Field(description="final score: the last stage that scored this hit")
    scores: dict[str, float] = Field(
        description="score given by each stage (bm25, dense, rrf, rerank, and blend when the rerank "
        "weight is below 1)"
    )
    explored: bool = Field(
        False, description="shown here by exploration (BERTSEARCH_EXPLORE_RATE): drawn from below the page, "
        "not ranked here"
    )


class RerankOut(BaseModel):
    requested: int = Field(description="candidates the rerank stage was asked to score")
    scored: int = Field(description="candidates it scored (the first ones in fused order)")
    cached: int = Field(0, description="of those, how many scores came from the score cache")
    budget_ms: float | None = Field(description="the time it was given (null: no limit)")
    spent_ms: float


class SearchResponse(BaseModel):
    query_id: str | None = Field(
        None, description="this answer's id in the feedback log: send it with events (POST /events)"
    )
    hits: list[HitOut]
    reranked: bool = Field(description="whether the cross-encoder reranked (some of) these hits")
    rerank: RerankOut | None = Field(None, description="what the rerank stage did; null when it did not run")
    degraded: bool = Field(False, description="whether the answer is less than asked for")
    degraded_reasons: list[str] = Field(
        default_factory=list,
        description="why: budget (the rerank budget ran out), queue (the time went waiting behind other "
        "requests), failure (the reranker failed: hits are in fused order)",
    )
    timings_ms: dict[str, float]
    notes: list[str] = Field(default_factory=list, description="stages skipped, and why")


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str
    metadata: dict[str, Any]


MAX_UPSERT_DOCUMENTS = 500


class DocumentIn(BaseModel):
    """A document to add or replace; ``id`` is its key."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=512, description="unique document id")
    title: str = Field("", max_length=10_000)
    text: str = Field("", max_length=1_000_000)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, doc_id: str) -> str:
        if not doc_id.strip():
            raise ValueError("id must contain some non-space text")
        return doc_id.strip()

    @model_validator(mode="after")
    def _has_content(self) -> DocumentIn:
        if not (self.title.strip() or self.text.strip()):
            raise ValueError(f"document {self.id!r} is empty: give a title or a text")
        return self


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(
        min_length=1, max_length=MAX_UPSERT_DOCUMENTS, description="documents to add or replace, by id"
    )

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, documents: list[DocumentIn]) -> list[DocumentIn]:
        seen: set[str] = set()
        repeated = sorted({d.id for d in documents if d.id in seen or seen.add(d.id)})
        if repeated:
            raise ValueError(f"each id may appear once per request; repeated: {repeated[:5]}")
        return documents


class WriteResponse(BaseModel):
    index_version: str = Field(description="the version the write produced, now served")
    parent_version: str | None = Field(description="the version the write was applied to")
    upserted: int
    deleted: int
    documents: int = Field(description="documents in the new version")
    seconds: float


MAX_EVENTS = 1000


class EventIn(BaseModel):
    """A user's action on a served hit, in the User Behavior Insights shape."""

    model_config = ConfigDict(extra="forbid")

    query_id: str = Field(min_length=1, max_length=64, description="the query_id of the answer")
    action_name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="impression, click, dwell, add_to_cart, ... (letters, digits, _ . : -)",
    )  # fmt: skip
    object_id: str = Field(min_length=1, max_length=512, description="the hit's document id")
    position: int = Field(ge=1, le=10_000, description="the hit's rank in the answer, from 1")
    session_id: str | None = Field(None, max_length=128)
    client_id: str | None = Field(None, max_length=128)
    timestamp: datetime | None = Field(None, description="when it happened (default: when received)")
    attributes: dict[str, Any] = Field(default_factory=dict, description="anything else, e.g. dwell_ms")

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the timestamp with a time zone, e.g. 2026-12-01T12:00:00Z")
        return value.astimezone(UTC) if value is not None else None


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsResponse(BaseModel):
    accepted: int = Field(description="events stored (all of the request's)")

