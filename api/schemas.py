"""Request and response bodies of the query service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class HitOut(BaseModel):
    id: str
    title: str
    snippet: str
    score: float = Field(description="final score: the last stage that scored this hit")
    scores: dict[str, float] = Field(description="score given by each stage (bm25, dense, rrf, rerank)")


class SearchResponse(BaseModel):
    hits: list[HitOut]
    reranked: bool = Field(description="whether the cross-encoder reranked these hits")
    timings_ms: dict[str, float]
    notes: list[str] = Field(default_factory=list, description="stages skipped, and why")


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str
    metadata: dict[str, Any]
