"""A `bertsearch index` killed with SIGKILL at any point, then rerun, gives exactly the clean index.

Real subprocesses, killed (with their whole process group, Ray included) at points of the
build chosen by watching the index directory: while reading, mid-embedding, near the end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bertsearch.indexer.build import CHECKPOINT_DIR
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.indexer.versions import BUILDING_PREFIX, IndexDirectory

pytestmark = pytest.mark.integration

DOCS = 1500
BATCH = 2  # many small batches: many checkpoint files, many moments to kill at
BATCHES = DOCS // BATCH
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau".split()
QUERIES = ["alpha beta", "kappa lambda mu", "sigma", "title 7"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("kill") / "corpus.jsonl"
    with open(path, "w") as out:
        for i in range(DOCS):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60)))
            out.write(json.dumps({"_id": f"doc-{i}", "title": f"title {i}", "text": text}) + "\n")
    return path


def start_index(source: Path, index_dir: Path, model: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    command = [
        f"{os.path.dirname(sys.executable)}/bertsearch",
        "index",
        str(source),
        "--index-dir",
        str(index_dir),
        "--model",
        str(model),
        "--batch-size",
        str(BATCH),
        "--no-progress",
        *extra,
    ]
    # Its own session, so a kill takes the whole group: the CLI and any Ray processes it started.
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def checkpointed(index_dir: Path) -> int:
    return sum(1 for _ in (index_dir / CHECKPOINT_DIR).rglob("*.npy"))


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the build ended before the kill point:\n{process.stdout.read()}")
        if condition():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail("the kill point was never reached")


def contents(index_dir: Path) -> dict:
    """Everything a search can observe of the current version."""
    snapshot = IndexSnapshot.open(index_dir)
    ids, vectors = snapshot.dense.items()
    return {
        "ids": ids,
        "vectors": vectors,
        "lexical_count": snapshot.lexical.count(),
        "documents": snapshot.lexical.get(ids),
        "bm25": {q: [(h.id, round(h.score, 4)) for h in snapshot.lexical.search(q, 20)] for q in QUERIES},
        "manifest_documents": snapshot.manifest.documents,
    }


def assert_same(resumed: dict, clean: dict) -> None:
    assert resumed["ids"] == clean["ids"]
    np.testing.assert_array_equal(resumed["vectors"], clean["vectors"])
    assert len(set(resumed["ids"])) == len(resumed["ids"]) == DOCS  # no duplicates, nothing lost
    for key in ("lexical_count", "documents", "bm25", "manifest_documents"):
        assert resumed[key] == clean[key], key


@pytest.fixture(scope="module")
def clean(source, tmp_path_factory, tiny_bert_dir) -> dict:
    index_dir = tmp_path_factory.mktemp("clean") / "index"
    finish(start_index(source, index_dir, tiny_bert_dir, "--embed-with", "local"))
    return contents(index_dir)


def staging_exists(index_dir: Path) -> bool:
    versions = index_dir / "versions"
    return versions.is_dir() and any(p.name.startswith(BUILDING_PREFIX) for p in versions.iterdir())


KILL_POINTS = {
    "while reading": lambda d: staging_exists(d),
    "mid-embedding": lambda d: checkpointed(d) >= BATCHES // 3,
    "near the end": lambda d: checkpointed(d) >= BATCHES - 50,
}


@pytest.mark.parametrize("moment", list(KILL_POINTS))
def test_killed_then_rerun_equals_a_clean_run(moment, source, tmp_path, tiny_bert_dir, clean):
    index_dir = tmp_path / "index"
    process = start_index(source, index_dir, tiny_bert_dir, "--embed-with", "local")
    kill_when(process, lambda: KILL_POINTS[moment](index_dir))
    assert IndexDirectory(index_dir).current_name() is None  # nothing half-built is served

    output = finish(start_index(source, index_dir, tiny_bert_dir, "--embed-with", "local"))
    if moment != "while reading":
        assert "embedding batches resumed" in output
    assert_same(contents(index_dir), clean)
    assert len(IndexDirectory(index_dir).versions()) == 1
    assert not staging_exists(index_dir) and checkpointed(index_dir) == 0


def test_a_rebuild_killed_midway_keeps_serving_the_previous_version(source, tmp_path, tiny_bert_dir, clean):
    index_dir = tmp_path / "index"
    finish(start_index(source, index_dir, tiny_bert_dir, "--embed-with", "local"))
    served = IndexDirectory(index_dir).current_name()
    process = start_index(source, index_dir, tiny_bert_dir, "--embed-with", "local")
    kill_when(process, lambda: checkpointed(index_dir) >= BATCHES // 2)
    assert IndexDirectory(index_dir).current_name() == served
    assert_same(contents(index_dir), clean)


@pytest.mark.slow
def test_a_killed_ray_data_build_reruns_to_the_clean_index(source, tmp_path, tiny_bert_dir, clean):
    index_dir = tmp_path / "index"
    process = start_index(source, index_dir, tiny_bert_dir, "--embed-with", "ray")
    kill_when(process, lambda: checkpointed(index_dir) >= BATCHES // 3)
    output = finish(start_index(source, index_dir, tiny_bert_dir, "--embed-with", "ray"))
    assert "embedding batches resumed" in output
    resumed = contents(index_dir)
    assert resumed["ids"] == clean["ids"]
    # Ray actors run the same batches with the same code; allow for a different thread count.
    np.testing.assert_allclose(resumed["vectors"], clean["vectors"], atol=1e-5)
    for key in ("lexical_count", "documents", "bm25"):
        assert resumed[key] == clean[key], key
