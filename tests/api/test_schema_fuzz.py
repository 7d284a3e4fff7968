"""The service's own OpenAPI schema, fuzzed by schemathesis over real HTTP: no request gets a 5xx.

A real uvicorn server on a loopback port serves a tiny index with a tiny (random) reranker and
takes writes; every operation of ``/openapi.json`` gets a bounded number of generated requests,
valid and invalid, with and without the API key.
"""

from __future__ import annotations

import json
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from bertsearch.api.app import create_app
from bertsearch.api.settings import ServiceSettings
from bertsearch.indexer.build import build_index
from bertsearch.indexer.embedder import Embedder
from support.files import write_jsonl
from support.servers import running, wait_ready

pytestmark = pytest.mark.integration

EXAMPLES = 40  # per operation: enough to hit the edges (surrogates, huge numbers) in seconds
KEY = "fuzz" * 8


@pytest.fixture(scope="module")
def server_url(tmp_path_factory, tiny_bert_dir, tiny_cross_encoder_dir, corpus_records):
    folder = tmp_path_factory.mktemp("fuzz")
    source = write_jsonl(folder / "corpus.jsonl", corpus_records)
    build_index(source, folder / "index", Embedder(tiny_bert_dir).load(), progress=False)
    reranker = shutil.copytree(tiny_cross_encoder_dir, folder / "reranker")
    (reranker / "metadata.json").write_text(json.dumps({"max_length": 64}))
    (folder / "reports").mkdir()  # report names are fuzzed against a real (empty) reports folder
    settings = ServiceSettings(index_dir=folder / "index", reranker=str(reranker), api_key=KEY,
                               reload_seconds=0, reports_dir=folder / "reports")  # fmt: skip
    with running(create_app(settings)) as base:
        wait_ready(base, 60)
        yield base


@pytest.fixture(scope="module")
def api_schema(server_url):
    return schemathesis.openapi.from_url(f"{server_url}/openapi.json")


def test_no_request_gets_a_server_error(api_schema, server_url):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    paths = {"/search", "/explain", "/events", "/documents", "/documents/{doc_id}", "/readyz",
             "/reports/{name}"}  # fmt: skip
    assert {op.path for op in operations} >= paths
    calls = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case):
            # half the requests carry the key, so writes and unlimited searches are fuzzed too
            headers = {"X-API-Key": KEY} if len(calls) % 2 else {}
            response = case.call_and_validate(
                base_url=server_url, headers=headers, checks=[not_a_server_error], timeout=30
            )
            calls.append(response.status_code)

        fuzz()
    assert len(calls) >= len(operations) * 10 and all(code < 500 for code in calls)
