"""The Ray Data embedding job on a local Ray, with a tiny model and one logical GPU declared."""

from __future__ import annotations

import numpy as np
import pytest

from bertsearch.indexer.build import build_index
from bertsearch.indexer.doc_embedding import LocalEmbedding, embed_documents
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.jobs.indexing.ray_embedding import RayEmbedding, RayEmbeddingConfig
from bertsearch.jobs.runtime import ray_session
from support.files import write_jsonl

TEXTS = [f"document {i} " + "about embeddings and ray actors " * (i % 9 + 1) for i in range(90)]
IDS = [f"d{i}" for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs and one *logical* GPU, so the GPU layout path runs on a CPU machine."""
    import ray

    if ray.is_initialized():  # left by another module: start ours with the GPU declared
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_vectors(tiny_bert_dir) -> np.ndarray:
    strategy = LocalEmbedding(Embedder(tiny_bert_dir, batch_size=8).load())
    return embed_documents(IDS, TEXTS, strategy).vectors


@pytest.mark.unit
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cpus_per_worker": 0}, "fraction"),
        ({"workers": -1}, "workers"),
        ({"batch_size": 0}, "batch_size"),
        ({"batches_per_call": 0}, "batches_per_call"),
        ({"precision": "fp16"}, "precision"),
    ],
)
def test_bad_layouts_are_refused_saying_what_to_change(settings, message):
    with pytest.raises(ValueError, match=message):
        RayEmbeddingConfig(**settings)


@pytest.mark.unit
def test_identity_is_read_without_loading_the_model(tiny_bert_dir):
    identity = RayEmbedding(RayEmbeddingConfig(model=str(tiny_bert_dir))).identity()
    local = LocalEmbedding(Embedder(tiny_bert_dir).load()).identity()
    assert {k: identity[k] for k in ("model", "fingerprint", "dim", "max_length")} == {
        k: local[k] for k in ("model", "fingerprint", "dim", "max_length")
    }


@pytest.mark.integration
@pytest.mark.parametrize("use_gpus", [True, False], ids=["one-actor-per-gpu", "fractional-cpu-actors"])
def test_ray_vectors_equal_in_process_vectors(ray_cluster, tiny_bert_dir, local_vectors, use_gpus):
    strategy = RayEmbedding(
        RayEmbeddingConfig(
            model=str(tiny_bert_dir), batch_size=8, workers=0 if use_gpus else 2, use_gpus=use_gpus
        )
    )
    layout = strategy.layout()
    if use_gpus:
        assert layout["num_gpus"] == 1 and layout["workers"] == 1
    else:
        assert layout["num_gpus"] == 0 and layout["num_cpus"] == 0.5 and layout["workers"] == 2
    run = embed_documents(IDS, TEXTS, strategy)
    assert run.batches == len(TEXTS) // 8 + 1
    np.testing.assert_allclose(run.vectors, local_vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(run.vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.integration
def test_build_index_with_ray_data(ray_cluster, tmp_path, corpus_records, tiny_bert_dir):
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_records)
    strategy = RayEmbedding(RayEmbeddingConfig(model=str(tiny_bert_dir), batch_size=3))
    report = build_index(source, tmp_path / "index", strategy, progress=False)
    assert report.manifest.embedding["embedded_with"] == "ray"
    snapshot = IndexSnapshot.open(tmp_path / "index")
    assert sorted(snapshot.dense.ids) == sorted(r["_id"] for r in corpus_records)
    local = Embedder(tiny_bert_dir).load()
    snapshot.check_encoder(local.fingerprint(), local.model_name)  # the query encoder fits
    tea = next(r for r in corpus_records if r["_id"] == "tea")
    query = local.embed([f"{tea['title']} {tea['text']}"])
    assert snapshot.dense.search(query, 1)[0][0].id == "tea"


class _WrongFingerprint(RayEmbedding):
    def identity(self) -> dict:
        return {**super().identity(), "fingerprint": "0000000000000000"}


@pytest.mark.integration
def test_workers_refuse_weights_other_than_planned(ray_cluster, tiny_bert_dir):
    strategy = _WrongFingerprint(RayEmbeddingConfig(model=str(tiny_bert_dir), use_gpus=False, workers=1))
    with pytest.raises(Exception, match="same model files"):
        embed_documents(IDS[:5], TEXTS[:5], strategy)


@pytest.mark.integration
def test_ray_session_leaves_a_running_ray_alone(ray_cluster):
    import ray

    with ray_session():
        assert ray.is_initialized()
    assert ray.is_initialized()  # not ours to stop
