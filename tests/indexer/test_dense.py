"""The FAISS dense index against exact brute-force ranking."""

from __future__ import annotations

import numpy as np
import pytest

from bertsearch.indexer.dense import DenseConfig, DenseIndex

pytestmark = pytest.mark.unit


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Clustered data, like real embeddings, so approximate indexes face a realistic task.
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, size=n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :k]


def test_flat_index_returns_the_exact_ranking_and_scores(tmp_path):
    docs, queries = unit_vectors(3000, 48, seed=1), unit_vectors(25, 48, seed=2)
    ids = [f"doc-{i}" for i in range(len(docs))]
    DenseIndex(48).build(ids, docs).save(tmp_path)
    results = DenseIndex.load(tmp_path).search(queries, 10)
    expected = brute_force(docs, queries, 10)
    for q, hits in enumerate(results):
        assert [h.id for h in hits] == [ids[i] for i in expected[q]]
        np.testing.assert_allclose(
            [h.scores["dense"] for h in hits], queries[q] @ docs[expected[q]].T, rtol=1e-5
        )


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_recall_the_exact_top_10(tmp_path, kind):
    docs, queries = unit_vectors(4000, 32, seed=3), unit_vectors(50, 32, seed=4)
    ids = [str(i) for i in range(len(docs))]
    DenseIndex(32, DenseConfig(kind=kind)).build(ids, docs).save(tmp_path)
    loaded = DenseIndex.load(tmp_path)
    assert loaded.config.kind == kind
    exact = brute_force(docs, queries, 10)
    found = loaded.search(queries, 10)
    recall = np.mean(
        [len({h.id for h in hits} & {ids[i] for i in exact[q]}) / 10 for q, hits in enumerate(found)]
    )
    assert recall >= 0.9


def test_k_larger_than_the_index_returns_every_document():
    docs = unit_vectors(5, 8, seed=5)
    hits = DenseIndex(8).build(list("abcde"), docs).search(docs[:1], 50)[0]
    assert sorted(h.id for h in hits) == list("abcde") and hits[0].id == "a"


@pytest.mark.parametrize(
    ("ids", "shape", "message"),
    [
        (["a", "a"], (2, 8), "unique"),
        (["a"], (2, 8), "1 ids for 2 vectors"),
        (["a", "b"], (2, 9), r"shape \(n, 8\)"),
    ],
)
def test_bad_builds_are_refused(ids, shape, message):
    with pytest.raises(ValueError, match=message):
        DenseIndex(8).build(ids, np.ones(shape, dtype=np.float32))


def test_unknown_index_kind_names_the_choices():
    with pytest.raises(ValueError, match="'flat', 'hnsw' or 'ivf'"):
        DenseConfig(kind="annoy")


@pytest.mark.unit
def test_without_faiss_gpu_the_index_stays_on_the_cpu_and_answers_the_same():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = DenseIndex(8).build([f"d{i}" for i in range(20)], vectors)
    before = [[h.id for h in hits] for hits in index.search(vectors[:3], 5)]
    moved = index.search_on_gpu()
    import faiss

    assert moved == (hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)
    assert [[h.id for h in hits] for hits in index.search(vectors[:3], 5)] == before
