"""Choosing the lexical backend: validation here, a full build and search on Elasticsearch when one is up."""

from __future__ import annotations

import os
import uuid

import pytest

from bertsearch.indexer.build import BuildConfig, build_index
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.lexical_backend import LexicalBackend
from bertsearch.indexer.snapshot import IndexSnapshot
from support.files import write_jsonl


@pytest.mark.unit
def test_backend_settings_are_checked_and_read_from_the_environment():
    with pytest.raises(ValueError, match="set BERTSEARCH_ES_URL"):
        LexicalBackend(kind="elasticsearch")
    with pytest.raises(ValueError, match="'tantivy' or 'elasticsearch'"):
        LexicalBackend(kind="solr")
    env = {
        "BERTSEARCH_LEXICAL": "elasticsearch",
        "BERTSEARCH_ES_URL": "http://es:9200",
        "BERTSEARCH_ES_ALIAS": "docs",
    }
    assert LexicalBackend.from_env(env) == LexicalBackend("elasticsearch", "http://es:9200", "docs")
    assert LexicalBackend.from_env({}) == LexicalBackend()


@pytest.mark.unit
def test_a_tantivy_version_records_its_backend_in_the_manifest(tmp_path, tiny_bert_dir, corpus_records):
    source = write_jsonl(tmp_path / "c.jsonl", corpus_records)
    report = build_index(source, tmp_path / "ix", Embedder(tiny_bert_dir).load(), progress=False)
    assert report.manifest.lexical["backend"] == "tantivy"
    assert (report.path / "lexical").is_dir()


@pytest.mark.unit
def test_an_elasticsearch_version_without_a_server_url_says_what_to_set(
    tmp_path, tiny_bert_dir, corpus_records
):
    source = write_jsonl(tmp_path / "c.jsonl", corpus_records)
    report = build_index(source, tmp_path / "ix", Embedder(tiny_bert_dir).load(), progress=False)
    manifest = report.path / "manifest.json"
    manifest.write_text(
        manifest.read_text().replace('"backend": "tantivy"', '"backend": "elasticsearch", "index": "bs-v1"')
    )
    with pytest.raises(ValueError, match="bs-v1.*set BERTSEARCH_ES_URL"):
        IndexSnapshot.open(tmp_path / "ix", LexicalBackend())


@pytest.fixture()
def es_backend() -> LexicalBackend:
    """An Elasticsearch backend with a fresh alias on the server at BERTSEARCH_ES_URL (or a skip)."""
    url = os.environ.get("BERTSEARCH_ES_URL")
    if not url:
        pytest.skip("BERTSEARCH_ES_URL is not set: no Elasticsearch server to test against")
    return LexicalBackend("elasticsearch", url, f"bertsearch-test-{uuid.uuid4().hex[:8]}")


@pytest.mark.integration
@pytest.mark.elasticsearch
def test_build_and_search_with_elasticsearch_behind_an_alias(
    es_backend, tmp_path, tiny_bert_dir, corpus_records
):
    from bertsearch.indexer.elastic_index import ElasticsearchIndex

    url = es_backend.es_url
    backend = es_backend
    source = write_jsonl(tmp_path / "c.jsonl", corpus_records)
    embedder = Embedder(tiny_bert_dir).load()
    first = build_index(source, tmp_path / "ix", embedder, BuildConfig(lexical=backend), progress=False)
    second = build_index(source, tmp_path / "ix", embedder, BuildConfig(lexical=backend), progress=False)
    try:
        snapshot = IndexSnapshot.open(tmp_path / "ix", backend)
        assert snapshot.manifest.lexical["index"] == second.manifest.lexical["index"]
        assert [h.id for h in snapshot.lexical.search("volcano magma", 3)][0] == "volcano"
        assert snapshot.lexical.count() == len(corpus_records)
        aliased = ElasticsearchIndex(url, backend.es_alias)
        assert list(aliased.client.indices.get_alias(name=backend.es_alias)) == [
            second.manifest.lexical["index"]
        ]
    finally:
        for report in (first, second):
            backend.drop(report.manifest.lexical)


@pytest.mark.integration
@pytest.mark.elasticsearch
def test_pruning_a_version_deletes_its_elasticsearch_index(
    es_backend, tmp_path, tiny_bert_dir, corpus_records
):
    from bertsearch.indexer.elastic_index import ElasticsearchIndex

    url = es_backend.es_url
    backend = es_backend
    source = write_jsonl(tmp_path / "c.jsonl", corpus_records)
    embedder = Embedder(tiny_bert_dir).load()
    config = BuildConfig(lexical=backend, keep_versions=1)
    first = build_index(source, tmp_path / "ix", embedder, config, progress=False)
    second = build_index(source, tmp_path / "ix", embedder, config, progress=False)
    try:
        client = ElasticsearchIndex(url, backend.es_alias).client
        assert not first.path.exists()
        assert not client.indices.exists(index=first.manifest.lexical["index"])
        assert client.indices.exists(index=second.manifest.lexical["index"])
    finally:
        for report in (first, second):
            backend.drop(report.manifest.lexical)
