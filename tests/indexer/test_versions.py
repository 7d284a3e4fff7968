"""Index versions: immutable, bound to their model by the manifest, switched atomically, pruned."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from bertsearch.indexer.build import CHECKPOINT_DIR, BuildConfig, build_index
from bertsearch.indexer.dense import DenseConfig
from bertsearch.indexer.doc_embedding import EmbeddingBatch, LocalEmbedding
from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.incremental import apply_updates
from bertsearch.indexer.lexical_backend import LexicalBackend
from bertsearch.indexer.models import weights_fingerprint
from bertsearch.indexer.snapshot import IndexSnapshot, ModelMismatchError
from bertsearch.indexer.versions import IndexBusyError, IndexDirectory, IndexNotFoundError, Manifest
from bertsearch.ranker.factory import open_pipeline
from support.files import write_jsonl

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def embedder(tiny_bert_dir) -> Embedder:
    return Embedder(tiny_bert_dir).load()


@pytest.fixture()
def source(tmp_path, corpus_records):
    return write_jsonl(tmp_path / "corpus.jsonl", corpus_records)


def test_manifest_records_model_index_and_source(tmp_path, source, embedder, tiny_bert_dir):
    config = BuildConfig(dense=DenseConfig(kind="hnsw", hnsw_m=16))
    report = build_index(source, tmp_path / "index", embedder, config, progress=False)
    manifest = Manifest.read(IndexDirectory(tmp_path / "index").current())
    assert manifest == report.manifest
    assert manifest.embedding["fingerprint"] == weights_fingerprint(str(tiny_bert_dir))
    assert manifest.embedding["model"] == str(tiny_bert_dir)
    assert manifest.embedding["dim"] == 32 and manifest.embedding["normalized"] is True
    assert manifest.embedding["embedded_with"] == "local"
    assert manifest.dense["kind"] == "hnsw" and manifest.dense["hnsw_m"] == 16
    assert manifest.documents == 8 and manifest.rejects == 0
    assert manifest.source == str(source.resolve())
    assert manifest.source_watermark == source.stat().st_mtime
    assert manifest.created_at and manifest.tool_version and manifest.parent is None


def test_every_build_is_a_new_version_and_old_ones_are_pruned(tmp_path, source, embedder):
    directory = IndexDirectory(tmp_path / "index")
    names = [
        build_index(
            source, directory.root, embedder, BuildConfig(keep_versions=2), progress=False
        ).manifest.version
        for _ in range(4)
    ]
    assert len(set(names)) == 4
    assert directory.versions() == names[-2:]
    assert directory.current_name() == names[-1]
    assert not (directory.root / CHECKPOINT_DIR).exists() or not any(
        (directory.root / CHECKPOINT_DIR).iterdir()
    )


def test_prune_never_removes_the_current_version(tmp_path, source, embedder):
    directory = IndexDirectory(tmp_path / "index")
    old = build_index(source, directory.root, embedder, progress=False).manifest.version
    build_index(source, directory.root, embedder, progress=False)
    (directory.root / "CURRENT").write_text(old + "\n")  # an operator rolled back
    assert directory.prune(keep=1) == []
    assert directory.versions()[0] == old
    with pytest.raises(ValueError, match="at least 1"):
        directory.prune(keep=0)


def test_pruning_releases_each_old_version_and_keeps_one_whose_release_fails(tmp_path, source, embedder):
    directory = IndexDirectory(tmp_path / "index")
    names = [build_index(source, directory.root, embedder, progress=False).manifest.version for _ in range(3)]
    released: list[str] = []

    def refuse_the_first(manifest: Manifest) -> None:
        if manifest.version == names[0]:
            raise ConnectionError("search backend unreachable")
        released.append(manifest.version)

    assert directory.prune(keep=1, release=refuse_the_first) == [names[1]]
    assert released == [names[1]] and directory.versions() == [names[0], names[2]]
    # the next prune (the backend is back) releases and removes the version kept before
    assert directory.prune(keep=1, release=lambda m: released.append(m.version)) == [names[0]]
    assert released == [names[1], names[0]] and directory.versions() == [names[2]]


def test_a_build_releases_the_versions_it_prunes_through_its_lexical_backend(tmp_path, source, embedder):
    released: list[dict] = []

    class Recording(LexicalBackend):
        def drop(self, entry):
            released.append(dict(entry))

    config = BuildConfig(keep_versions=1, lexical=Recording())
    first = build_index(source, tmp_path / "index", embedder, config, progress=False)
    build_index(source, tmp_path / "index", embedder, config, progress=False)
    assert released == [first.manifest.lexical]


def test_a_dense_index_refuses_a_query_encoder_with_other_weights(
    tmp_path, source, embedder, tiny_cross_encoder_dir
):
    build_index(source, tmp_path / "index", embedder, progress=False)
    with pytest.raises(ModelMismatchError, match="weights") as err:
        open_pipeline(tmp_path / "index", encoder_model=str(tiny_cross_encoder_dir))
    assert "--model" in str(err.value)


def test_an_update_with_another_model_is_refused_and_writes_nothing(
    tmp_path, source, embedder, tiny_cross_encoder_dir
):
    directory = IndexDirectory(tmp_path / "index")
    build_index(source, directory.root, embedder, progress=False)
    before = (directory.current_name(), directory.versions())
    other = Embedder(tiny_cross_encoder_dir).load()
    from bertsearch.indexer.documents import Document

    with pytest.raises(ModelMismatchError, match="never mixes"):
        apply_updates(directory.root, [Document("x", "X", "a new doc")], [], other)
    assert (directory.current_name(), directory.versions()) == before


def test_no_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexNotFoundError, match="bertsearch index"):
        IndexSnapshot.open(tmp_path / "empty")


def test_the_writer_lock_is_exclusive(tmp_path):
    directory = IndexDirectory(tmp_path / "index")
    other = IndexDirectory(tmp_path / "index")
    with directory.lock(), pytest.raises(IndexBusyError, match="retry"), other.lock(timeout=0.2):
        pass
    with directory.lock(timeout=0.2):  # released: free again
        pass


class FailingAfter:
    """The in-process strategy, dying after ``n`` batches, as a killed job would."""

    name = "local"

    def __init__(self, embedder: Embedder, n: int) -> None:
        self.inner = LocalEmbedding(embedder)
        self.batch_size = 2
        self.n = n

    def identity(self) -> dict:
        return self.inner.identity()

    def embed_batches(self, batches: Sequence[EmbeddingBatch]) -> Iterator[tuple[int, np.ndarray]]:
        for done, item in enumerate(self.inner.embed_batches(batches)):
            if done == self.n:
                raise KeyboardInterrupt("killed")
            yield item


def test_an_interrupted_build_changes_nothing_and_its_rerun_resumes(tmp_path, source, tiny_bert_dir):
    embedder = Embedder(tiny_bert_dir, batch_size=2).load()
    directory = IndexDirectory(tmp_path / "index")
    first = build_index(source, directory.root, embedder, progress=False).manifest.version
    with pytest.raises(KeyboardInterrupt):
        build_index(source, directory.root, FailingAfter(embedder, 3), progress=False)
    assert directory.current_name() == first and directory.versions() == [first]

    report = build_index(source, directory.root, embedder, progress=False)
    assert report.resumed_batches == 3
    clean = build_index(source, tmp_path / "clean", embedder, progress=False)
    resumed, fresh = IndexSnapshot.open(directory.root), IndexSnapshot.open(clean.path.parents[1])
    assert resumed.dense.ids == fresh.dense.ids
    np.testing.assert_array_equal(resumed.dense.items()[1], fresh.dense.items()[1])
