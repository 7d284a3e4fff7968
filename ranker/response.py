"""The public shape of a search answer, shared by ``POST /search`` and ``bertsearch search --json``."""

from __future__ import annotations

import re
from typing import Any

from bertsearch.indexer.documents import Document
from bertsearch.ranker.pipeline import SearchResult

SNIPPET_CHARS = 240
_WORD = re.compile(r"\w+")


def snippet(document: Document, query: str, width: int = SNIPPET_CHARS) -> str:
    """A window of the document text of about ``width`` characters around the first query word it holds."""
    text = " ".join(document.text.split()) or document.title
    if len(text) <= width:
        return text
    lowered = text.lower()
    positions = [lowered.find(w) for w in _WORD.findall(query.lower()) if len(w) > 2]
    first = min((p for p in positions if p >= 0), default=0)
    start = max(0, first - width // 4)
    start = text.rfind(" ", 0, start) + 1 if start else 0
    end = text.rfind(" ", start, start + width)
    end = end if end > start else start + width
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def result_to_dict(result: SearchResult, query: str, query_id: str | None = None) -> dict[str, Any]:
    """The answer as JSON; ``query_id`` is its id in the service's feedback log (None: not logged)."""
    hits = []
    for hit in result.hits:
        doc = result.documents.get(hit.id)
        hits.append(
            {
                "id": hit.id,
                "title": doc.title if doc else "",
                "snippet": snippet(doc, query) if doc else "",
                "score": hit.score,
                "scores": dict(hit.scores),
            }
        )
    return {
        "query_id": query_id,
        "hits": hits,
        "reranked": result.reranked,
        "rerank": result.rerank.to_dict() if result.rerank is not None else None,
        "degraded": result.degraded,
        "degraded_reasons": list(result.degraded_reasons),
        "timings_ms": result.timings_ms,
        "notes": result.notes,
    }
