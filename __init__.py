"""bertsearch: BM25 + FAISS retrieval, fused, reranked by a BERT cross-encoder.

The repository's root is the ``bertsearch`` package (``pyproject.toml`` maps it with
``package-dir``): its four folders install as ``bertsearch.indexer``, ``bertsearch.ranker``,
``bertsearch.api`` and ``bertsearch.jobs``, and nothing else of the repository is installed.
This module is the small public API for calling bertsearch from Python; the names load lazily,
so ``import bertsearch`` costs nothing until one is used::

    from bertsearch import PipelineConfig, open_pipeline

    pipeline = open_pipeline("var/sample/index", reranker="var/sample/reranker")
    for hit in pipeline.search("read a compressed file", top_k=3).hits:
        print(hit.id, hit.score)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    "Document": "bertsearch.indexer.documents",
    "Hit": "bertsearch.indexer.documents",
    "build_index": "bertsearch.indexer.build",
    "Embedder": "bertsearch.indexer.embedder",
    "CrossEncoder": "bertsearch.ranker.cross_encoder",
    "PipelineConfig": "bertsearch.ranker.pipeline",
    "SearchPipeline": "bertsearch.ranker.pipeline",
    "SearchResult": "bertsearch.ranker.pipeline",
    "open_pipeline": "bertsearch.ranker.factory",
}

__all__ = [
    "CrossEncoder",
    "Document",
    "Embedder",
    "Hit",
    "PipelineConfig",
    "SearchPipeline",
    "SearchResult",
    "build_index",
    "open_pipeline",
]

if TYPE_CHECKING:
    from bertsearch.indexer.build import build_index
    from bertsearch.indexer.documents import Document, Hit
    from bertsearch.indexer.embedder import Embedder
    from bertsearch.ranker.cross_encoder import CrossEncoder
    from bertsearch.ranker.factory import open_pipeline
    from bertsearch.ranker.pipeline import PipelineConfig, SearchPipeline, SearchResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bertsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
