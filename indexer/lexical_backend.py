"""Which lexical backend a deployment uses, and where each index version keeps its lexical part.

The embedded default keeps a tantivy index inside the version folder. With Elasticsearch, each
version writes the concrete index ``{alias}-{version}``; publishing a version points the alias
at it, and the manifest names the concrete index, so a served version always pairs its own
lexical and dense halves, whatever the alias says at that moment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bertsearch.indexer.lexical import LexicalIndex
from bertsearch.indexer.tantivy_index import ANALYZER, SEARCH_FIELDS, TantivyIndex
from bertsearch.indexer.versions import Manifest

LEXICAL_DIR = "lexical"
BACKEND_ENV = "BERTSEARCH_LEXICAL"
ES_URL_ENV = "BERTSEARCH_ES_URL"
ES_ALIAS_ENV = "BERTSEARCH_ES_ALIAS"
Kind = Literal["tantivy", "elasticsearch"]


@dataclass(frozen=True)
class LexicalBackend:
    """``tantivy`` (embedded, on disk) or ``elasticsearch`` (``es_url``, versions behind ``es_alias``)."""

    kind: Kind = "tantivy"
    es_url: str | None = None
    es_alias: str = "bertsearch"

    def __post_init__(self) -> None:
        if self.kind not in ("tantivy", "elasticsearch"):
            raise ValueError(f"lexical backend must be 'tantivy' or 'elasticsearch', not {self.kind!r}")
        if self.kind == "elasticsearch" and not self.es_url:
            raise ValueError(f"the elasticsearch backend needs a server URL: set {ES_URL_ENV}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LexicalBackend:
        return cls(
            kind=environ.get(BACKEND_ENV, "tantivy"),  # type: ignore[arg-type]
            es_url=environ.get(ES_URL_ENV) or None,
            es_alias=environ.get(ES_ALIAS_ENV, "bertsearch"),
        )

    def create(self, staging: Path, version: str) -> tuple[LexicalIndex, dict[str, Any]]:
        """A new, empty lexical index for ``version``, and the manifest entry that finds it again."""
        if self.kind == "tantivy":
            entry = {"backend": "tantivy", "analyzer": ANALYZER, "fields": list(SEARCH_FIELDS)}
            return TantivyIndex(staging / LEXICAL_DIR), entry
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        index = ElasticsearchIndex.for_version(self.es_url, self.es_alias, version.lower())
        index.drop()  # a crashed earlier attempt at this very version must not leave documents behind
        entry = {"backend": "elasticsearch", "index": index.index, "alias": self.es_alias, "fields": ["body"]}
        return index, entry

    def open(self, folder: Path, entry: Mapping[str, Any]) -> LexicalIndex:
        """The lexical index a version's manifest entry names."""
        fields = list(entry.get("fields", SEARCH_FIELDS))
        if entry.get("backend", "tantivy") == "tantivy":
            return TantivyIndex(folder / LEXICAL_DIR, fields=fields)
        if not self.es_url:
            raise ValueError(
                f"index version {folder.name} keeps its lexical part in Elasticsearch index "
                f"{entry.get('index')!r}: set {ES_URL_ENV} to the server's URL"
            )
        from bertsearch.indexer.elastic_index import ElasticsearchIndex

        return ElasticsearchIndex(self.es_url, entry["index"], fields=fields)

    def publish(self, lexical: LexicalIndex) -> None:
        """After a version became current: point the alias at its Elasticsearch index."""
        if self.kind == "elasticsearch":
            lexical.promote(self.es_alias)  # type: ignore[attr-defined]

    def drop(self, entry: Mapping[str, Any]) -> None:
        """Remove a version's Elasticsearch index, given its manifest's lexical entry (tantivy's
        goes with the version folder)."""
        if entry.get("backend") == "elasticsearch" and self.es_url:
            from bertsearch.indexer.elastic_index import ElasticsearchIndex

            ElasticsearchIndex(self.es_url, entry["index"]).drop()

    def release(self, manifest: Manifest) -> None:
        """``IndexDirectory.prune``'s hook: drop a pruned version's own lexical index."""
        self.drop(manifest.lexical)
