"""The API takes up new index versions under load, and writes documents behind an API key."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from bertsearch.api.app import VERSION_HEADER, create_app
from bertsearch.api.settings import ServiceSettings
from bertsearch.indexer.build import BuildConfig, build_index
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.versions import IndexDirectory
from support.files import write_jsonl

KEY = "k" * 32


def marked(records: list[dict], marker: str) -> list[dict]:
    return [{**r, "text": f"{r['text']} marker {marker}"} for r in records]


def build(folder, records, embedder, keep=3) -> str:
    source = write_jsonl(folder / "corpus.jsonl", records)
    report = build_index(source, folder / "index", embedder, BuildConfig(keep_versions=keep), progress=False)
    return report.manifest.version


@pytest.fixture(scope="module")
def embedder(tiny_bert_dir):
    return Embedder(tiny_bert_dir).load()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.unit
def test_version_switch_under_concurrent_queries_never_fails_or_mixes(tmp_path, corpus_records, embedder):
    markers: dict[str, str] = {build(tmp_path, marked(corpus_records, "alpha"), embedder, keep=2): "alpha"}
    settings = ServiceSettings(index_dir=tmp_path / "index", reload_seconds=0.05)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"

    stop = threading.Event()
    failures: list[str] = []
    answers: list[tuple[str, set[str], int]] = []  # (version header, markers in the hits, hit count)

    def query() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/search", json={"query": "marker", "top_k": 8})
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                hits = response.json()["hits"]
                markers_seen = {hit["snippet"].rsplit(" ", 1)[-1] for hit in hits}
                answers.append((response.headers[VERSION_HEADER], markers_seen, len(hits)))

    clients = [threading.Thread(target=query) for _ in range(4)]
    try:
        for client in clients:
            client.start()
        for round_ in range(6):
            marker = "beta" if round_ % 2 == 0 else "alpha"
            version = build(tmp_path, marked(corpus_records, marker), embedder, keep=2)
            markers[version] = marker
            time.sleep(0.4)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
        server.should_exit = True
        thread.join(timeout=30)
    assert failures == []
    # Checked once every version's marker is known (a version can answer before build() returns).
    mixed = [a for a in answers if a[2] != 8 or a[1] != {markers[a[0]]}]
    assert mixed == [], f"{len(mixed)} answers mixed versions, e.g. {mixed[:3]}"
    seen = Counter(version for version, _, _ in answers)
    assert len(seen) >= 4, f"too few versions were served under load: {dict(seen)}"
    assert len(answers) >= 50


@pytest.fixture()
def index_dir(tmp_path, corpus_records, embedder):
    build(tmp_path, corpus_records, embedder)
    return tmp_path / "index"


def versions_of(index_dir) -> tuple[str | None, list[str]]:
    directory = IndexDirectory(index_dir)
    return directory.current_name(), directory.versions()


@pytest.mark.unit
def test_writes_need_the_configured_key_and_write_nothing_otherwise(index_dir):
    before = versions_of(index_dir)
    doc = {"documents": [{"id": "new", "title": "Ferns", "text": "Ferns reproduce by spores."}]}
    with TestClient(create_app(ServiceSettings(index_dir=index_dir))) as client:
        refused = client.put("/documents", json=doc, headers={"X-API-Key": KEY})
        assert refused.status_code == 403 and "BERTSEARCH_API_KEY" in refused.json()["detail"]
        assert client.delete("/documents/tea", headers={"X-API-Key": KEY}).status_code == 403
    with TestClient(create_app(ServiceSettings(index_dir=index_dir, api_key=KEY))) as client:
        missing = client.put("/documents", json=doc)
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        wrong = client.put("/documents", json=doc, headers={"X-API-Key": "w" * 32})
        assert wrong.status_code == 403
        assert client.delete("/documents/tea").status_code == 401
        assert client.delete("/documents/tea", headers={"X-API-Key": "nope"}).status_code == 403
        assert client.put("/documents", json={"documents": "x"}).status_code == 401  # auth first
        assert client.get("/documents/new").status_code == 404
        assert client.get("/documents/tea").status_code == 200
    assert versions_of(index_dir) == before


def search_ids(client, query: str, **stages) -> list[str]:
    body = {"query": query, "top_k": 10, "stages": stages}
    return [hit["id"] for hit in client.post("/search", json=body).json()["hits"]]


@pytest.mark.unit
def test_put_and_delete_documents_publish_versions_visible_to_both_retrievers(index_dir):
    settings = ServiceSettings(index_dir=index_dir, api_key=KEY, reload_seconds=0)
    headers = {"X-API-Key": KEY}
    with TestClient(create_app(settings)) as client:
        first = client.get("/readyz").json()["index_version"]
        put = client.put(
            "/documents",
            headers=headers,
            json={
                "documents": [
                    {"id": "ferns", "title": "Ferns", "text": "Ferns reproduce by spores, not seeds."},
                    {"id": "tea", "title": "Black tea", "text": "Black tea is fully oxidised."},
                ]
            },
        )
        assert put.status_code == 200, put.text
        body = put.json()
        assert body["parent_version"] == first and body["upserted"] == 2 and body["documents"] == 9
        # Served at once (read-your-writes), even with the watcher's polling off.
        assert client.get("/readyz").json()["index_version"] == body["index_version"]
        assert "ferns" in search_ids(client, "spores", dense=False)
        assert "ferns" in search_ids(client, "spores", lexical=False)
        assert client.get("/documents/tea").json()["title"] == "Black tea"
        assert search_ids(client, "unoxidised Camellia", dense=False) == []

        deleted = client.delete("/documents/ferns", headers=headers)
        assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
        assert deleted.json()["parent_version"] == body["index_version"]
        assert client.get("/documents/ferns").status_code == 404
        assert "ferns" not in search_ids(client, "spores", dense=False)
        assert "ferns" not in search_ids(client, "spores", lexical=False)
        missing = client.delete("/documents/ferns", headers=headers)
        assert missing.status_code == 404
        assert client.get("/readyz").json()["index_version"] == deleted.json()["index_version"]

        bad = client.put("/documents", headers=headers, json={"documents": [{"id": "x", "title": " "}]})
        assert bad.status_code == 422 and "empty" in bad.text
        twice = client.put(
            "/documents",
            headers=headers,
            json={"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]},
        )
        assert twice.status_code == 422 and "repeated" in twice.text


@pytest.mark.unit
def test_a_version_built_with_another_model_is_not_served(
    tmp_path, corpus_records, embedder, tiny_cross_encoder_dir
):
    build(tmp_path, corpus_records, embedder)
    settings = ServiceSettings(index_dir=tmp_path / "index", reload_seconds=0)
    with TestClient(create_app(settings)) as client:
        served = client.get("/readyz").json()["index_version"]
        # Same architecture, other weights: the served encoder must not read these vectors.
        other = Embedder(tiny_cross_encoder_dir).load()
        build(tmp_path, corpus_records, other)
        assert client.app.state.watcher.check() is False
        ready = client.get("/readyz").json()
        assert ready["index_version"] == served
        assert "weights" in ready["version_error"]
        assert client.post("/search", json={"query": "tea"}).status_code == 200
