"""Shared fixtures: offline guards, tiny random BERT models, a small hand-written corpus."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from support.files import write_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _allowed_hosts() -> set[str]:
    hosts = {"localhost"}
    es_url = os.environ.get("BERTSEARCH_ES_URL")
    if es_url:
        hosts.add(urlparse(es_url).hostname or "")
    return hosts


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = str(address[0])
    if host in _allowed_hosts():
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True, scope="session")
def no_outbound_network():
    """Fail any test that tries to reach beyond this machine (a model hub, a dataset URL)."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def guarded(connect):
        def wrapper(sock, address):
            if not _is_local(address):
                raise OSError(f"tests are offline: refused a connection to {address!r}")
            return connect(sock, address)

        return wrapper

    socket.socket.connect = guarded(original_connect)
    socket.socket.connect_ex = guarded(original_connect_ex)
    yield
    socket.socket.connect = original_connect
    socket.socket.connect_ex = original_connect_ex


TINY_BERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=512,
)


def _save_tiny(model, folder: Path) -> Path:
    from transformers import AutoTokenizer

    from bertsearch.indexer.models import resolve_model

    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model(None)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with the MiniLM tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return _save_tiny(BertModel(BertConfig(**TINY_BERT)), tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory) -> Path:
    """A tiny BERT with a one-logit head saved with it, so it loads as a (random) trained reranker."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**TINY_BERT, num_labels=1))
    return _save_tiny(model, tmp_path_factory.mktemp("tiny-cross-encoder"))


CORPUS = [
    {
        "_id": "cats",
        "title": "Domestic cats",
        "text": "Cats are small carnivorous mammals kept as pets; they purr and hunt mice.",
    },
    {
        "_id": "dogs",
        "title": "Dogs",
        "text": "Dogs are loyal companions, descended from wolves, trained for herding and guarding.",
    },
    {
        "_id": "python",
        "title": "The Python language",
        "text": "Python is a programming language with dynamic typing and garbage collection.",
    },
    {
        "_id": "rust",
        "title": "Rust",
        "text": "Rust is a systems programming language focused on memory safety without garbage collection.",
    },
    {
        "_id": "tea",
        "title": "Green tea",
        "text": "Green tea is brewed from unoxidised leaves of Camellia sinensis and contains caffeine.",
    },
    {
        "_id": "coffee",
        "title": "Coffee",
        "text": "Coffee is brewed from roasted beans; espresso is coffee forced through fine grounds.",
    },
    {
        "_id": "volcano",
        "title": "Volcanoes",
        "text": "A volcano erupts when magma rises through the crust and reaches the surface.",
    },
    {
        "_id": "glacier",
        "title": "Glaciers",
        "text": "Glaciers are rivers of ice that carve valleys as they slowly flow downhill.",
    },
]


@pytest.fixture(scope="session")
def corpus_records() -> list[dict]:
    return [dict(r) for r in CORPUS]


@pytest.fixture(scope="session")
def tiny_index_dir(tmp_path_factory, tiny_bert_dir, corpus_records) -> Path:
    """An index of the shared corpus embedded by the tiny BERT. Shared by the whole session, so
    read-only: a test that writes to an index (or keeps a feedback log beside it) builds its own."""
    folder = tmp_path_factory.mktemp("tiny-index")
    source = write_jsonl(folder / "corpus.jsonl", corpus_records)
    from bertsearch.indexer.build import build_index
    from bertsearch.indexer.embedder import Embedder

    build_index(source, folder / "index", Embedder(tiny_bert_dir).load(), progress=False)
    return folder / "index"


